"""The HLS C++ backend's building blocks: stream formats, a node's generated code, constant tables.

The kernels are C++ templates in ``templates/hls/`` (the library, hls4ml's split); each graph
node gets a translation unit generated from a Jinja2 template: its constants as initialised
arrays, bound to block RAM or LUT RAM, and a process function ``fn(in0, ..., out, rows)`` over
packed ``hls::stream`` s that calls its library kernel.  An op fills the template with
:func:`kernel_node` (``templates/hls/node_call.cpp.j2``) or a template of its own; the dataflow
top is :mod:`hw.hls_top`, the C simulation :mod:`hw.csim`.

Stream format (:func:`stream`): rows of ``width`` values, ``elems`` values of ``bits`` bits per
word, element e at bits [e*bits, e*bits+bits); ``bipolar``: +-1 values carried as one bit each
(1 <-> +1).  The RTL backend (:mod:`hw.rtl`) packs its streams the same way.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from . import templating
from .resources import LUTRAM_MAX_BITS, value_bits

LIBRARY = "hls"        # templates/hls: the kernel library and the HLS templates


def stream(width: int, elems: int, bits: int, signed: bool = False, bipolar: bool = False) -> dict:
    """Rows of ``width`` values, ``elems`` values of ``bits`` bits per word.
    ``bipolar``: +-1 values carried as one bit each (1 <-> +1)."""
    return dict(width=width, folds=width // elems, elems=elems, bits=bits, signed=signed, bipolar=bipolar)


@dataclass
class NodeCode:
    name: str
    fn: str
    code: str            # C++ definitions: constants + ``void fn(in0, ..., out, rows)``
    inputs: list         # stream() dicts
    out: dict
    rows_out_per_in: tuple = (1, 1)   # output rows per input rows (a strided conv has fewer tokens)
    # rows per image of every input, where they differ (AttentionTokens: the map and its
    # pooled tokens); empty: every input has input 0's rows.  ``rows`` is input 0's.
    rows_in: tuple = ()

    @property
    def prototype(self) -> str:
        ins = "".join(f"hls::stream<ap_uint<{s['elems'] * s['bits']}> > &in{i}, " for i, s in enumerate(self.inputs))
        return f"void {self.fn}({ins}hls::stream<ap_uint<{self.out['elems'] * self.out['bits']}> > &out, unsigned rows)"


def c_name(name: str) -> str:
    """A C identifier for a node name; the hash keeps "a.b" and "a_b" apart."""
    tag = hashlib.sha1(name.encode()).hexdigest()[:6]
    return "node_" + "".join(ch if ch.isalnum() else "_" for ch in name) + "_" + tag


def c_int(bits: int) -> str:
    """The smallest C integer type for a signed ``bits``-bit constant.  Constant
    tables are plain C arrays: g++ builds a static initializer per element of an
    ap_int array, which made large tables (position embeddings) take minutes."""
    for w in (8, 16, 32, 64):
        if bits <= w:
            return f"int{w}_t"
    raise ValueError(f"a {bits}-bit constant does not fit in 64 bits")


def rom_type(ctype: str, bits: int, signed: bool) -> str:
    """A constant table's element type: ``ctype`` for g++, exactly ``bits`` wide under
    synthesis (BHVIT_SWORD / BHVIT_UWORD of bhvit_fixed.hpp)."""
    return f"BHVIT_{'S' if signed else 'U'}WORD({bits}, {ctype})"


def storage_of(bits: int) -> str:
    """Where Vitis HLS keeps a constant table: block RAM from LUTRAM_MAX_BITS (16 kbit) on, LUT
    RAM below (per table: the RTL's placement by fill and the Affine groups are RTL-only)."""
    return "bram" if bits >= LUTRAM_MAX_BITS else "lutram"


@dataclass
class Table:
    """A constant array of a node: ``static const <ctype> <fn>_<name><dims> = <init>;``, each
    element ``width`` bits wide under synthesis."""
    name: str
    ctype: str
    dims: tuple
    width: int
    init: str

    @property
    def bits(self) -> int:
        return self.width * int(np.prod(self.dims))

    @property
    def impl(self) -> str:
        return storage_of(self.bits)

    @property
    def shape(self) -> str:
        return "".join(f"[{d}]" for d in self.dims)


def int_table(name: str, v, dims: tuple, init: str, signed: bool = True) -> Table:
    """A table of integers at the smallest signed width that holds ``v`` (value_bits)."""
    b = value_bits(v)
    return Table(name, rom_type(c_int(b), b, signed), dims, b, init)


def hex_words(bits: np.ndarray) -> list[str]:
    """(n, width) 0/1 -> hex strings of width-bit words, element e at bit e."""
    out = []
    for row in np.asarray(bits, dtype=np.uint8):
        v = int("".join(str(int(b)) for b in row[::-1]), 2) if row.size else 0
        out.append(format(v, "x"))
    return out


def bit_word_literal(hex_word: str, width: int) -> str:
    """A C++ literal of a ``width``-bit word given in hex: ``0x..ULL`` up to 64 bits."""
    return f"0x{hex_word}ULL" if width <= 64 else f'ap_uint<{width}>("{hex_word}", 16)'


def bit_word_type(width: int) -> str:
    """The element type of a table of ``width``-bit words."""
    return rom_type("uint64_t", width, False) if width <= 64 else f"ap_uint<{width}>"


def lanes_init(v, pe: int) -> str:
    """(C,) -> C++ initialiser of a [PE][C/PE] array, channel c = cf * PE + pe."""
    v = np.asarray(v).reshape(-1)
    cf = v.size // pe
    return "{" + ", ".join("{" + ", ".join(str(int(v[f * pe + p])) for f in range(cf)) + "}"
                           for p in range(pe)) + "}"


def flat_init(v) -> str:
    """C++ initialiser of a one-dimensional array."""
    return "{" + ", ".join(str(int(x)) for x in np.asarray(v).reshape(-1)) + "}"


def rows_init(rows) -> str:
    """C++ initialiser of a two-dimensional array, one row per line."""
    return "{\n    " + ",\n    ".join(rows) + "}"


def fold_init(w, pe: int, simd: int) -> str:
    """(N, T) -> C++ initialiser of a [PE][N/PE * T/SIMD][SIMD] array (FINN's MVAU layout):
    entry [p][nf * SF + sf][s] is term sf * SIMD + s of output nf * PE + p."""
    w = np.asarray(w, dtype=np.int64)
    n, t = w.shape
    nf, sf = n // pe, t // simd
    return "{" + ", ".join(
        "{" + ", ".join("{" + ", ".join(str(int(v)) for v in w[f * pe + p, s * simd:(s + 1) * simd]) + "}"
                        for f in range(nf) for s in range(sf)) + "}" for p in range(pe)) + "}"


def kernel_node(name: str, kernel: str, targs, inputs: list, out: dict, tables=(), rows_per: int = 1,
                rows_out_per_in: tuple = (1, 1), rows_in: tuple = ()) -> NodeCode:
    """A node whose process function calls one library kernel ``bhvit::<kernel><targs>`` on its
    streams and ``tables`` (templates/hls/node_call.cpp.j2); the kernel takes ``rows / rows_per``
    (images, windows or rows)."""
    fn = c_name(name)
    code = templating.render(f"{LIBRARY}/node_call.cpp.j2", fn=fn, kernel=kernel, targs=[str(a) for a in targs],
                             in_words=[s["elems"] * s["bits"] for s in inputs], out_word=out["elems"] * out["bits"],
                             tables=list(tables), rows="rows" if rows_per == 1 else f"rows / {rows_per}")
    return NodeCode(name, fn, code, list(inputs), out, rows_out_per_in=tuple(rows_out_per_in), rows_in=tuple(rows_in))


def cpp_bool(v) -> str:
    return "true" if v else "false"


def node_source(n: NodeCode) -> str:
    """The translation unit of one node (its constants and process function), as a generated
    HLS project holds it: templates/hls/node.cpp.j2."""
    return templating.render(f"{LIBRARY}/node.cpp.j2", n=n)


def library_files() -> list:
    """The kernel library headers a generated project needs (every .hpp of templates/hls)."""
    return sorted(p.name for p in (templating.TEMPLATES / LIBRARY).glob("*.hpp"))


def library_key() -> str:
    """Hash of the kernel library (every file of templates/hls): part of every C-simulation cache key."""
    d = templating.TEMPLATES / LIBRARY
    lib = "".join(p.read_text() for p in sorted(d.iterdir()) if p.is_file())
    return hashlib.sha256(lib.encode()).hexdigest()
