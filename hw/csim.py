"""C simulation of the HLS kernels with g++ and Xilinx's ap_types headers.

The kernels are C++ templates in ``templates/hls/`` (the library) plus code
generated per node (hls4ml's split): :class:`NodeCode` is one node's C++
(its constants as initialised arrays, as the HLS build stores them, and a
function ``fn(in0, ..., out, rows)`` over packed hls::streams) with the
layout of its streams.  A Jinja2 testbench packs .npy rows into stream
words, runs the node, unpacks the output; several nodes compile into one
binary (a switch over their index), so a whole graph's nodes cost one g++
run.  g++ builds with ``-Wall -Werror``; binaries are cached under
``build/csim/`` by a hash of their sources.

Headers: ``$XILINX_HLS/include`` where Vitis HLS is installed, else the
Apache-2.0 ap_types headers that ``make setup`` takes from the hls4ml wheel
into ``.venv/ap_types``.
"""
from __future__ import annotations

import hashlib
import re
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cost import FoldingError  # noqa: F401  (raised by check_fold; one class for every folding check)

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates" / "hls"
CACHE = ROOT / "build" / "csim"
# the flags of ../shared/spec/toolchain.md, plus -Werror: a warning fails the build
CXXFLAGS = ["-std=c++14", "-O1", "-Wall", "-Werror", "-Wno-unknown-pragmas", "-Wno-uninitialized",
            "-Wno-maybe-uninitialized"]


class CsimError(RuntimeError):
    """The C simulation could not be built or run."""


def ap_types_dir() -> Path:
    xilinx = os.environ.get("XILINX_HLS")
    cands = ([Path(xilinx) / "include"] if xilinx else []) + [ROOT / ".venv" / "ap_types"]
    for c in cands:
        if (c / "ap_int.h").exists() and (c / "hls_stream.h").exists():
            return c
    raise CsimError(f"no ap_types headers (ap_int.h, hls_stream.h) in {', '.join(map(str, cands))}: "
                    "run `make setup` (it takes them from the hls4ml wheel) or set XILINX_HLS")


def _env():
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def check_fold(node: str, what: str, size: int, value: int) -> None:
    if value < 1 or size % value:
        legal = [d for d in range(1, size + 1) if size % d == 0]
        raise FoldingError(f"{node}: {what}={value} does not divide {size}; legal values: {legal}")


def c_name(name: str) -> str:
    """A C identifier for a node name; the hash keeps "a.b" and "a_b" apart."""
    tag = hashlib.sha1(name.encode()).hexdigest()[:6]
    return "node_" + "".join(ch if ch.isalnum() else "_" for ch in name) + "_" + tag


# ---------------------------------------------------------------------- node code
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


def node_source(n: NodeCode) -> str:
    """The translation unit of one node (its constants and process function), as a
    generated HLS project holds it: templates/hls/node.cpp.j2."""
    return _env().get_template("node.cpp.j2").render(n=n)


def _hex_words(bits: np.ndarray) -> list[str]:
    """(n, width) 0/1 -> hex strings of width-bit words, element e at bit e."""
    out = []
    for row in np.asarray(bits, dtype=np.uint8):
        v = int("".join(str(int(b)) for b in row[::-1]), 2) if row.size else 0
        out.append(format(v, "x"))
    return out


def _table(v: np.ndarray, pe: int) -> str:
    """(C,) -> C++ initialiser of a [PE][C/PE] array, channel c = cf * PE + pe."""
    v = np.asarray(v).reshape(-1)
    cf = v.size // pe
    return "{" + ", ".join("{" + ", ".join(str(int(v[f * pe + p])) for f in range(cf)) + "}"
                           for p in range(pe)) + "}"


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


def _signed_bits(v) -> int:
    """Bits of the smallest signed type holding every value of v."""
    v = np.asarray(v, dtype=np.int64)
    m = int(max(v.max(initial=0), -v.min(initial=0) - 1))
    return max(m.bit_length() + 1, 2)


def mvau_code(name: str, w_bits, simd: int, pe: int, bipolar_in: bool = False) -> NodeCode:
    """``bhvit::mvau_xnor``: w_bits (MH, MW) 0/1; output (rows, MH) popcounts."""
    w_bits = np.asarray(w_bits)
    mh, mw = w_bits.shape
    check_fold(name, "SIMD", mw, simd)
    check_fold(name, "PE", mh, pe)
    sf, nf = mw // simd, mh // pe
    ob = int(mw).bit_length()
    fn = c_name(name)
    rows = []
    for p in range(pe):          # weights[pe][nf * SF + sf] = inputs sf*SIMD.. of output nf*PE + pe
        words = []
        for f in range(nf):
            words += _hex_words(w_bits[f * pe + p].reshape(sf, simd))
        if simd <= 64:
            rows.append("{" + ", ".join(f"0x{h}ULL" for h in words) + "}")
        else:
            rows.append("{" + ", ".join(f'ap_uint<{simd}>("{h}", 16)' for h in words) + "}")
    wtype = rom_type("uint64_t", simd, False) if simd <= 64 else f"ap_uint<{simd}>"
    code = (f"static const {wtype} {fn}_w[{pe}][{nf * sf}] = {{\n    " + ",\n    ".join(rows) + "};\n"
            f"void {fn}(hls::stream<ap_uint<{simd}> > &in0, hls::stream<ap_uint<{pe * ob}> > &out, unsigned rows) {{\n"
            f"    bhvit::mvau_xnor<{mw}, {mh}, {simd}, {pe}, {ob}>(in0, out, {fn}_w, rows);\n}}\n")
    return NodeCode(name, fn, code, [stream(mw, simd, 1, bipolar=bipolar_in)], stream(mh, pe, ob))


def threshold_code(name: str, thresholds, in_bits: int, pe: int, bipolar_out: bool = False) -> NodeCode:
    """``bhvit::threshold_sign``: (rows, C) signed in_bits-bit -> bit 1 where x >= t[c]."""
    t = np.asarray(thresholds, dtype=np.int64).reshape(-1)
    c = t.size
    check_fold(name, "PE", c, pe)
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    t = np.clip(t, lo, hi + 1)                # always / never: the compare is unchanged on [lo, hi]
    fn = c_name(name)
    code = (f"static const {rom_type(c_int(in_bits + 1), in_bits + 1, True)} {fn}_t[{pe}][{c // pe}] = {_table(t, pe)};\n"
            f"void {fn}(hls::stream<ap_uint<{pe * in_bits}> > &in0, hls::stream<ap_uint<{pe}> > &out, "
            f"unsigned rows) {{\n    bhvit::threshold_sign<{c}, {pe}, {in_bits}>(in0, out, {fn}_t, rows);\n}}\n")
    return NodeCode(name, fn, code, [stream(c, pe, in_bits, signed=True)], stream(c, pe, 1, bipolar=bipolar_out))


def fixed_code(name: str, kind: str, in_bits, signed, mults: dict, bias, shift: int, out_bits: int, pe: int,
               lshifts=None, pc_k=None, channels: int | None = None) -> NodeCode:
    """A generated fixed-point node, ``kind`` "affine" or "rprelu" (hw/kernels/fixed.py).

    mults: {"m0": (C,), ...} for affine, {"m_pos", "m_neg"} for rprelu; bias: (C,)
    per channel or (T, C), row t of every T consecutive rows (tokens); a
    scalar multiplier or bias applies to every channel.  ``channels``: the
    stream width (default: the longest multiplier)."""
    n = len(in_bits)
    c = channels or max(np.asarray(v).size for v in mults.values())
    mults = {k: np.broadcast_to(np.asarray(v, dtype=np.int64).reshape(-1), (c,)) for k, v in mults.items()}
    check_fold(name, "PE", c, pe)
    lshifts = list(lshifts or [0] * n)
    pc_k = list(pc_k or [0] * n)
    if any(v < 0 for v in lshifts):
        raise ValueError(f"{name}: negative left shift {lshifts}")
    bias = np.asarray(bias, dtype=np.int64)
    bias = np.broadcast_to(bias.reshape(-1), (c,)).reshape(1, c) if bias.size in (1, c) else bias.reshape(-1, c)
    # accumulator: large enough for the worst case of every term plus the bias
    bound = int(np.abs(bias).max(initial=0))
    for i in range(n):
        xmax = (1 << in_bits[i]) if not pc_k[i] else 2 * (1 << in_bits[i]) + pc_k[i]
        keys = ["m_pos", "m_neg"] if kind == "rprelu" else [f"m{i}"]
        bound += xmax * int(max(np.abs(mults[k]).max(initial=0) for k in keys)) << lshifts[i]
    acc_bits = bound.bit_length() + 2
    if acc_bits > 62:
        raise ValueError(f"{name}: accumulator of {acc_bits} bits exceeds the 62 the golden model keeps exact")
    fn = c_name(name)
    inputs = [dict(bits=in_bits[i], signed=bool(signed[i]), lshift=lshifts[i], pc_k=pc_k[i]) for i in range(n)]
    mlist = [dict(name=k, ctype=rom_type(c_int(_signed_bits(v)), _signed_bits(v), True), init=_table(v, pe))
             for k, v in mults.items()]
    code = _env().get_template("fixed_node.hpp.j2").render(
        kind=kind, name=name, fn=fn, pe=pe, cf=c // pe, inputs=inputs, mults=mlist, bias_ctype=rom_type(c_int(_signed_bits(bias)), _signed_bits(bias), True),
        bias_rows=bias.shape[0], bias_init="{" + ", ".join(_table(row, pe) for row in bias) + "}",
        acc_bits=acc_bits, shift=shift, out_bits=out_bits)
    return NodeCode(name, fn, code, [stream(c, pe, in_bits[i], bool(signed[i])) for i in range(n)],
                    stream(c, pe, out_bits, True))


# ---------------------------------------------------------------------- build + run
def library_key() -> str:
    """Hash of the kernel library (every file of templates/hls): part of every cache key."""
    lib = "".join((TEMPLATES / f).read_text() for f in sorted(os.listdir(TEMPLATES)))
    return hashlib.sha256(lib.encode()).hexdigest()


def _compile(src: str, tag: str, inc: Path, lib_key: str, include_dirs=()) -> Path:
    """g++ one translation unit into build/csim/, cached by the hash of its source,
    ``lib_key`` (the headers it may include) and the flags; returns the object file."""
    key = hashlib.sha256("\n".join([src, lib_key, str(inc), " ".join(CXXFLAGS)]).encode()).hexdigest()[:16]
    obj = CACHE / f"{tag}-{key}.o"
    if obj.exists():
        return obj
    cpp = obj.with_suffix(".cpp")
    cpp.write_text(src)
    tmp = obj.with_suffix(".part")
    incs = [a for d in include_dirs for a in ("-I", str(d))]
    cmd = ["g++", *CXXFLAGS, "-isystem", str(inc), *incs, "-I", str(TEMPLATES), "-c", str(cpp), "-o", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise CsimError(f"g++ failed for {tag} ({cpp}):\n{res.stderr[-4000:]}")
    tmp.replace(obj)
    return obj


def build(nodes: list[NodeCode], name: str, jobs: int | None = None, progress: bool = False) -> Path:
    """One testbench binary for these nodes: one translation unit per node (compiled
    in parallel and cached, so a graph rebuilds only the nodes that changed) and a
    dispatcher; ``run(exe, i, ...)`` runs node i."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm
    inc = ap_types_dir()
    CACHE.mkdir(parents=True, exist_ok=True)
    env = _env()
    lib_key = library_key()
    units = [(node_source(n), n.fn[:50]) for n in nodes]
    units.append((env.get_template("main_tb.cpp.j2").render(nodes=nodes, name=name), "main"))
    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        objs = list(tqdm(pool.map(lambda u: _compile(u[0], u[1], inc, lib_key), units), total=len(units),
                         desc=f"g++ {name}", unit="unit", disable=not progress))
    key = hashlib.sha256(" ".join(str(o) for o in objs).encode()).hexdigest()[:16]
    tag = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:60]
    exe = CACHE / f"{tag}-{key}"
    if not exe.exists():
        tmp = exe.with_suffix(".part")
        res = subprocess.run(["g++", *map(str, objs), "-o", str(tmp)], capture_output=True, text=True)
        if res.returncode != 0:
            raise CsimError(f"linking {name} failed:\n{res.stderr[-4000:]}")
        tmp.replace(exe)
    return exe


def run(exe: Path, index: int, *xs: np.ndarray) -> np.ndarray:
    """Node ``index`` of a testbench binary on (rows, width) integer inputs."""
    with tempfile.TemporaryDirectory() as d:
        fins = [Path(d) / f"in{i}.npy" for i in range(len(xs))]
        fout = Path(d) / "out.npy"
        for f, x in zip(fins, xs):
            np.save(f, np.ascontiguousarray(x, dtype=np.int64))
        res = subprocess.run([str(exe), str(index), *map(str, fins), str(fout)], capture_output=True, text=True)
        if res.returncode != 0:
            raise CsimError(f"{exe.name} node {index} exited with {res.returncode}: {res.stderr.strip()}")
        return np.load(fout)


def simulate(node: NodeCode, *xs) -> np.ndarray:
    """Build (or reuse) the one-node testbench and run it."""
    return run(build([node], node.name), 0, *[np.asarray(x, dtype=np.int64) for x in xs])


# ---------------------------------------------------------------------- one-kernel conveniences
def mvau_xnor(x_bits, w_bits, simd: int, pe: int, name: str = "mvau") -> np.ndarray:
    """x_bits (rows, MW) 0/1, w_bits (MH, MW) 0/1 -> (rows, MH) popcounts of xnor(x, w[n])."""
    return simulate(mvau_code(name, w_bits, simd, pe), x_bits)


def threshold_sign(x, thresholds, in_bits: int, pe: int, name: str = "threshold") -> np.ndarray:
    """x (rows, C) signed in_bits-bit -> (rows, C) bits, 1 where x >= t[c]."""
    return simulate(threshold_code(name, thresholds, in_bits, pe), x)


def fixed_node(kind: str, xs, in_bits, signed, mults: dict, bias, shift: int, out_bits: int, pe: int,
               lshifts=None, pc_k=None, name: str = "fixed") -> np.ndarray:
    return simulate(fixed_code(name, kind, in_bits, signed, mults, bias, shift, out_bits, pe, lshifts, pc_k), *xs)


# ---------------------------------------------------------------------- graph nodes
def _dt(graph, tensor):
    from qonnx.core.datatype import DataType
    return DataType[graph.dtype_of(tensor)]


def node_code(graph, node, channels: int, tokens_in: int = 0) -> NodeCode:
    """The C++ of one node of a :class:`hw.graph.Graph` whose output stream has
    ``channels`` values per row and whose first input ``tokens_in`` rows per
    image, with its folding (PE / SIMD; 1 where unset), and the memory each of
    its constant tables is bound to."""
    return bind_storage(_node_code(graph, node, channels, tokens_in))


_TABLE = re.compile(r"static const (u?int(8|16|32|64)_t|ap_uint<(\d+)>|BHVIT_[SU]WORD\((\d+), \w+\)) (\w+)((?:\[\d+\])+)")
_TYPE_BITS = {"8": 8, "16": 16, "32": 32, "64": 64}


def storage_of(bits: int) -> str:
    """BRAM for a table of hw.cost.LUTRAM_MAX_BITS (16 kbit) or more, LUTRAM below (per table: the
    RTL's placement by fill and the Affine groups of hw.cost.fixed_tables are RTL-only)."""
    from .cost import LUTRAM_MAX_BITS
    return "bram" if bits >= LUTRAM_MAX_BITS else "lutram"


def bind_storage(n: NodeCode) -> NodeCode:
    """Tell Vitis HLS where each constant table of the node lives: a ROM in BRAM or
    in LUTRAM, chosen by its size as the cost model does (the pragmas open the
    node's process function; g++ ignores them)."""
    pragmas = []
    for m in _TABLE.finditer(n.code):
        width = int(m.group(3) or m.group(4) or _TYPE_BITS[m.group(2)])
        bits = width * int(np.prod([int(d) for d in re.findall(r"\d+", m.group(6))]))
        pragmas.append(f"#pragma HLS BIND_STORAGE variable={m.group(5)} type=rom_2p impl={storage_of(bits)}"
                       f"  // {bits} bits")
    head = f"void {n.fn}("
    at = n.code.find(head)
    if not pragmas or at < 0:
        return n
    brace = n.code.index("{\n", at) + 2
    n.code = n.code[:brace] + "".join(p + "\n" for p in pragmas) + n.code[brace:]
    return n


def _node_code(graph, node, channels: int, tokens_in: int = 0) -> NodeCode:
    from functools import partial

    from .kernel_args import kernel_args
    family, kwargs = kernel_args(graph, node, channels, tokens_in, backend="HLS")
    generators = {
        # HLS only: a graph's Thresholding outputs / MVAU inputs are its +-1 activations as bits,
        # and these generators mark those stream formats bipolar (hw/hls_top.py never widens a
        # bipolar stream); hw/rtlsim.py's threshold_rtl / mvau_rtl take no such flag
        "threshold": partial(threshold_code, bipolar_out=True),
        "mvau": partial(mvau_code, bipolar_in=True),
        "fixed": fixed_code, "lut": lut_code, "token": token_code, "xnor_conv": xnor_conv_code,
        "int_conv": int_conv_code, "int_linear": int_linear_code, "layernorm": layernorm_code,
        "qd_attention": qd_attention_code, "window": window_code, "shift_conv": shift_conv_code,
    }
    return generators[family](**kwargs)


def xnor_conv_code(name: str, w, h: int, w_: int, stride: int, pad: int, dilation: int, groups: int, pe: int,
                   out_bits: int) -> NodeCode:
    """``bhvit::xnor_conv``: w (O, C/G, k, k) +-1; input one C-bit (bipolar) word per
    token, output (rows, O) signed sums over the valid taps."""
    w = np.asarray(w)
    o, cg, k, _ = w.shape
    c = cg * groups
    check_fold(name, "PE", o, pe)
    fn = c_name(name)
    bits = (w.reshape(o, cg, k * k).transpose(0, 2, 1) + 1) // 2          # [o][tap][channel of the group]
    rows = []
    for oo in range(o):
        words = _hex_words(bits[oo])
        rows.append("{" + ", ".join(f"0x{x}ULL" if cg <= 64 else f'ap_uint<{cg}>("{x}", 16)' for x in words) + "}")
    wtype = rom_type("uint64_t", cg, False) if cg <= 64 else f"ap_uint<{cg}>"
    ho = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    wo = (w_ + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    code = (f"static const {wtype} {fn}_w[{o}][{k * k}] = {{\n    " + ",\n    ".join(rows) + "};\n"
            f"void {fn}(hls::stream<ap_uint<{c}> > &in0, hls::stream<ap_uint<{pe * out_bits}> > &out, "
            f"unsigned rows) {{\n    bhvit::xnor_conv<{h}, {w_}, {c}, {o}, {groups}, {k}, {stride}, {pad}, {dilation}, "
            f"{pe}, {out_bits}>(in0, out, {fn}_w, rows / {h * w_});\n}}\n")
    return NodeCode(name, fn, code, [stream(c, c, 1, bipolar=True)], stream(o, pe, out_bits, True),
                    rows_out_per_in=(ho * wo, h * w_))


def lut_code(name: str, table, in_bits: int, channels: int, pe: int, out_bits: int) -> NodeCode:
    """``bhvit::lut``: y = table[x - min] on a signed in_bits-bit stream (GELU)."""
    table = np.asarray(table, dtype=np.int64).reshape(-1)
    if table.size != 1 << in_bits:
        raise ValueError(f"{name}: table of {table.size} entries for a {in_bits}-bit input")
    check_fold(name, "PE", channels, pe)
    fn = c_name(name)
    ct = rom_type(c_int(_signed_bits(table)), _signed_bits(table), True)
    code = (f"static const {ct} {fn}_table[{table.size}] = {{{', '.join(str(int(v)) for v in table)}}};\n"
            f"void {fn}(hls::stream<ap_uint<{pe * in_bits}> > &in0, hls::stream<ap_uint<{pe * out_bits}> > &out, "
            f"unsigned rows) {{\n    bhvit::lut<{channels}, {pe}, {in_bits}, {out_bits}>(in0, out, {fn}_table, rows);\n}}\n")
    return NodeCode(name, fn, code, [stream(channels, pe, in_bits, True)], stream(channels, pe, out_bits, True))


def token_code(name: str, op: str, a: dict, out_channels: int, pe: int, in_bits: int, in_signed: bool,
               out_bits: int, out_signed: bool, tokens_in: int = 0) -> NodeCode:
    """The data-movement kernels of templates/hls/bhvit_tokens.hpp for one node.
    Map kernels (ShiftBranch) take images = rows / (H * W)."""
    fn = c_name(name)
    sg = "true" if in_signed else "false"
    ratio = (1, 1)
    if op == "ShiftBranch":
        c = out_channels
        h, w = a["H"], a["W"]
        if a["kind"] == "box":
            check_fold(name, "PE", c, pe)
            call = (f"bhvit::shift_box<{h}, {w}, {c}, {pe}, {in_bits}, {sg}, {out_bits}, {a['reach']}, "
                    f"{'true' if a['axis'] == 'h' else 'false'}>(in0, out, rows / {h * w})")
        else:
            if c % 4:
                raise FoldingError(f"{name}: channel mix needs channels divisible by 4, got {c}")
            check_fold(name, "PE", c // 4, pe)
            out_bits, out_signed = in_bits, in_signed
            call = f"bhvit::shift_mix<{h}, {w}, {c}, {pe}, {in_bits}, {a['reach']}>(in0, out, rows / {h * w})"
        cin = c
    elif op == "RepeatChannels":
        cin = out_channels // a["ratio"]
        check_fold(name, "PE", cin, pe)
        out_bits, out_signed = in_bits, in_signed
        call = f"bhvit::repeat_channels<{cin}, {pe}, {in_bits}, {a['ratio']}>(in0, out, rows)"
    elif op == "GroupSumChannels":
        cin = out_channels * a["ratio"]
        check_fold(name, "PE", out_channels, pe)
        call = (f"bhvit::group_sum_channels<{cin}, {pe}, {in_bits}, {sg}, {out_bits}, {a['ratio']}>"
                f"(in0, out, rows)")
    elif op == "TokenPool":
        c, h, w, k = out_channels, a["H"], a["W"], a["k"]
        check_fold(name, "PE", c, pe)
        if h % k or w % k:
            raise FoldingError(f"{name}: pooling {k}x{k} does not divide the {h}x{w} map")
        if a["mode"] == "max":
            out_bits = in_bits
        call = (f"bhvit::token_pool<{h}, {w}, {c}, {pe}, {in_bits}, {sg}, {out_bits}, {k}, "
                f"{'true' if a['mode'] == 'max' else 'false'}>(in0, out, rows / {h * w})")
        cin = c
        ratio = ((h // k) * (w // k), h * w)
    elif op == "TokenSum":
        c = cin = out_channels
        check_fold(name, "PE", c, pe)
        if tokens_in < 1:
            raise ValueError(f"{name}: TokenSum needs the number of tokens per image")
        call = f"bhvit::token_sum<{tokens_in}, {c}, {pe}, {in_bits}, {sg}, {out_bits}>(in0, out, rows / {tokens_in})"
        ratio = (1, tokens_in)
    else:
        raise NotImplementedError(f"{name}: no token kernel for {op}")
    code = (f"void {fn}(hls::stream<ap_uint<{pe * in_bits}> > &in0, hls::stream<ap_uint<{pe * out_bits}> > &out, "
            f"unsigned rows) {{\n    {call};\n}}\n")
    return NodeCode(name, fn, code, [stream(cin, pe, in_bits, in_signed)], stream(out_channels, pe, out_bits, out_signed),
                    rows_out_per_in=ratio)


def shift_conv_code(name: str, coef, h: int, w: int, channels: int, pe: int, in_bits: int, in_signed: bool,
                    out_bits: int) -> NodeCode:
    """``bhvit::shift_conv``: the fused shift unit (hw/passes.py), a circular depthwise
    convolution over hw.kernels.shift.CROSS_TAPS with coef (C, 9)."""
    from .kernels.shift import CROSS_TAPS
    coef = np.asarray(coef, dtype=np.int64)
    if coef.shape != (channels, len(CROSS_TAPS)):
        raise ValueError(f"{name}: coef has shape {coef.shape}, expected ({channels}, {len(CROSS_TAPS)})")
    check_fold(name, "PE", channels, pe)
    fn = c_name(name)
    kb = _signed_bits(coef)
    ct = rom_type(c_int(kb), kb, True)
    rows = ",\n    ".join("{" + ", ".join(str(int(v)) for v in r) + "}" for r in coef)
    code = (f"static const {ct} {fn}_coef[{channels}][{len(CROSS_TAPS)}] = {{\n    {rows}}};\n"
            f"void {fn}(hls::stream<ap_uint<{pe * in_bits}> > &in0, hls::stream<ap_uint<{pe * out_bits}> > &out, "
            f"unsigned rows) {{\n    bhvit::shift_conv<{h}, {w}, {channels}, {pe}, {in_bits}, "
            f"{'true' if in_signed else 'false'}, {out_bits}>(in0, out, {fn}_coef, rows / {h * w});\n}}\n")
    return NodeCode(name, fn, code, [stream(channels, pe, in_bits, in_signed)], stream(channels, pe, out_bits, True))


def _fold_table(w, pe: int, simd: int) -> str:
    """(N, T) -> C++ initialiser of a [PE][N/PE * T/SIMD][SIMD] array (FINN's MVAU layout):
    entry [p][nf * SF + sf][s] is term sf * SIMD + s of output nf * PE + p."""
    w = np.asarray(w, dtype=np.int64)
    n, t = w.shape
    nf, sf = n // pe, t // simd
    return "{" + ", ".join(
        "{" + ", ".join("{" + ", ".join(str(int(v)) for v in w[f * pe + p, s * simd:(s + 1) * simd]) + "}"
                        for f in range(nf) for s in range(sf)) + "}" for p in range(pe)) + "}"


def int_conv_code(name: str, w, h: int, w_: int, stride: int, simd: int, pe: int, out_bits: int) -> NodeCode:
    """``bhvit::int_conv`` (the stem): w (O, Cin, k, k) integers (8-bit) on the uint8
    image, one Cin x 8-bit word per pixel, no padding; output (tokens, O) exact sums."""
    w = np.asarray(w, dtype=np.int64)
    o, cin, k, k2 = w.shape
    if k != k2 or h < k or w_ < k:
        raise ValueError(f"{name}: a {k}x{k2} kernel on a {h}x{w_} image")
    t = cin * k * k
    check_fold(name, "PE", o, pe)
    check_fold(name, "SIMD", t, simd)
    bound = int(np.abs(w).reshape(o, -1).sum(1).max(initial=0)) * 255
    if out_bits < bound.bit_length() + 1:
        raise ValueError(f"{name}: {out_bits} output bits cannot hold the sums (up to {bound})")
    fn = c_name(name)
    ho, wo = (h - k) // stride + 1, (w_ - k) // stride + 1
    code = (f"static const {rom_type(c_int(_signed_bits(w)), _signed_bits(w), True)} {fn}_w[{pe}][{(o // pe) * (t // simd)}][{simd}] = "
            f"{_fold_table(w.reshape(o, t), pe, simd)};\n"
            f"void {fn}(hls::stream<ap_uint<{cin * 8}> > &in0, hls::stream<ap_uint<{pe * out_bits}> > &out, "
            f"unsigned rows) {{\n    bhvit::int_conv<{h}, {w_}, {cin}, {o}, {k}, {stride}, {simd}, {pe}, "
            f"{bound.bit_length() + 2}, {out_bits}>(in0, out, {fn}_w, rows / {h * w_});\n}}\n")
    return NodeCode(name, fn, code, [stream(cin, cin, 8)], stream(o, pe, out_bits, True),
                    rows_out_per_in=(ho * wo, h * w_))


def int_linear_code(name: str, w, bias, in_bits: int, in_signed: bool, simd: int, pe: int,
                    out_bits: int) -> NodeCode:
    """``bhvit::int_linear`` (the classifier): (rows, K) x w (N, K) integers + bias (N,),
    SIMD inputs and PE outputs per word; exact sums.  The accumulator is sized from the
    input type; ``out_bits`` (the graph's output type) may be narrower, since the graph
    bounds the input by its producer's range (a token sum), not by its type."""
    w = np.asarray(w, dtype=np.int64)
    bias = np.broadcast_to(np.asarray(bias, dtype=np.int64).reshape(-1), (w.shape[0],))
    n, kk = w.shape
    check_fold(name, "PE", n, pe)
    check_fold(name, "SIMD", kk, simd)
    xmax = (1 << (in_bits - 1)) if in_signed else (1 << in_bits) - 1
    bound = int(np.abs(w).sum(1).max(initial=0)) * xmax + int(np.abs(bias).max(initial=0))
    fn = c_name(name)
    sg = "true" if in_signed else "false"
    code = (f"static const {rom_type(c_int(_signed_bits(w)), _signed_bits(w), True)} {fn}_w[{pe}][{(n // pe) * (kk // simd)}][{simd}] = "
            f"{_fold_table(w, pe, simd)};\n"
            f"static const {rom_type(c_int(_signed_bits(bias)), _signed_bits(bias), True)} {fn}_b[{pe}][{n // pe}] = {_table(bias, pe)};\n"
            f"void {fn}(hls::stream<ap_uint<{simd * in_bits}> > &in0, hls::stream<ap_uint<{pe * out_bits}> > &out, "
            f"unsigned rows) {{\n    bhvit::int_linear<{kk}, {n}, {simd}, {pe}, {in_bits}, {sg}, {bound.bit_length() + 2}, "
            f"{out_bits}>(in0, out, {fn}_w, {fn}_b, rows);\n}}\n")
    return NodeCode(name, fn, code, [stream(kk, simd, in_bits, in_signed)], stream(n, pe, out_bits, True))


def layernorm_code(name: str, gmul, bias, eps: int, r_bits: int, shift: int, in_bits: int, in_signed: bool,
                   out_bits: int, pe: int) -> NodeCode:
    """``bhvit::layernorm`` (hw/kernels/attention.py layernorm_int) on rows of C values."""
    gmul = np.asarray(gmul, dtype=np.int64).reshape(-1)
    c = gmul.size
    bias = np.broadcast_to(np.asarray(bias, dtype=np.int64).reshape(-1), (c,))
    check_fold(name, "PE", c, pe)
    if eps < 0 or r_bits < 1:
        raise ValueError(f"{name}: eps {eps} and r_bits {r_bits} must be non-negative / positive")
    # |D * inv| <= 2^R (see the kernel), so this bounds the accumulator
    acc_bits = ((1 << r_bits) * int(np.abs(gmul).max(initial=0)) + int(np.abs(bias).max(initial=0))).bit_length() + 2
    fn = c_name(name)
    sg = "true" if in_signed else "false"
    code = (f"static const {rom_type(c_int(_signed_bits(gmul)), _signed_bits(gmul), True)} {fn}_g[{pe}][{c // pe}] = {_table(gmul, pe)};\n"
            f"static const {rom_type(c_int(_signed_bits(bias)), _signed_bits(bias), True)} {fn}_b[{pe}][{c // pe}] = {_table(bias, pe)};\n"
            f"void {fn}(hls::stream<ap_uint<{pe * in_bits}> > &in0, hls::stream<ap_uint<{pe * out_bits}> > &out, "
            f"unsigned rows) {{\n    bhvit::layernorm<{c}, {pe}, {in_bits}, {sg}, {out_bits}, {r_bits}, {shift}, "
            f"{int(eps)}ULL, {acc_bits}>(in0, out, {fn}_g, {fn}_b, rows);\n}}\n")
    return NodeCode(name, fn, code, [stream(c, pe, in_bits, in_signed)], stream(c, pe, out_bits, True))


def qd_attention_code(name: str, table, heads: int, levels: int, channels: int, tokens: int, pe: int,
                      out_bits: int) -> NodeCode:
    """``bhvit::qd_attention``: q, k, v (windows * tokens, channels) bipolar, one word per
    token; output one word of channels / heads context values per (token, head).
    PE: keys per cycle (divides the tokens of a window)."""
    table = np.asarray(table, dtype=np.int64).reshape(-1)
    if channels % heads:
        raise ValueError(f"{name}: {heads} heads do not divide {channels} channels")
    d = channels // heads
    if table.size != 2 * d + 1 or table.min(initial=0) < 0:
        raise ValueError(f"{name}: the exp table needs {2 * d + 1} non-negative entries, got {table.size}")
    if tokens < 1:
        raise ValueError(f"{name}: QDAttention needs the number of tokens per window")
    check_fold(name, "PE", tokens, pe)
    if levels * tokens >= 1 << (out_bits - 1):
        raise ValueError(f"{name}: {out_bits} output bits cannot hold +-{levels * tokens}")
    fn = c_name(name)
    eb = max(int(table.max(initial=0)).bit_length(), 1)
    code = (f"static const {rom_type(c_int(eb + 1), eb + 1, True)} {fn}_table[{table.size}] = {{{', '.join(str(int(v)) for v in table)}}};\n"
            f"void {fn}(hls::stream<ap_uint<{channels}> > &in0, hls::stream<ap_uint<{channels}> > &in1, "
            f"hls::stream<ap_uint<{channels}> > &in2, hls::stream<ap_uint<{d * out_bits}> > &out, unsigned rows) {{\n"
            f"    bhvit::qd_attention<{tokens}, {channels}, {heads}, {levels}, {pe}, {eb}, {out_bits}>"
            f"(in0, in1, in2, out, {fn}_table, rows / {tokens});\n}}\n")
    s_in = stream(channels, channels, 1, bipolar=True)
    return NodeCode(name, fn, code, [s_in, dict(s_in), dict(s_in)], stream(channels, d, out_bits, True),
                    rows_out_per_in=(tokens, tokens))


def window_code(name: str, op: str, h: int, w: int, win: int, pooled: int, channels: int, pe: int, in_bits: int,
                in_signed: bool, out_bits: int) -> NodeCode:
    """The MSMHA window reshuffles of templates/hls/bhvit_tokens.hpp: ``AttentionTokens``
    (map + pooled tokens -> windows), ``WindowReverse`` and ``PooledUpsample`` (context
    windows -> map).  ``pooled``: pooled tokens per image (= per window)."""
    c = channels
    check_fold(name, "PE", c, pe)
    if h % win or w % win:
        raise ValueError(f"{name}: {win}x{win} windows do not tile the {h}x{w} map")
    n_win, n_loc = (h // win) * (w // win), win * win
    fn = c_name(name)
    sg = "true" if in_signed else "false"
    s_in = stream(c, pe, in_bits, in_signed)
    if op == "AttentionTokens":
        code = (f"void {fn}(hls::stream<ap_uint<{pe * in_bits}> > &in0, hls::stream<ap_uint<{pe * in_bits}> > &in1, "
                f"hls::stream<ap_uint<{pe * in_bits}> > &out, unsigned rows) {{\n"
                f"    bhvit::attention_tokens<{h}, {w}, {win}, {pooled}, {c}, {pe}, {in_bits}>"
                f"(in0, in1, out, rows / {h * w});\n}}\n")
        return NodeCode(name, fn, code, [s_in, dict(s_in)], dict(s_in), rows_in=(h * w, pooled),
                        rows_out_per_in=(n_win * (n_loc + pooled), h * w))
    rows_img = n_win * (n_loc + pooled)
    if op == "WindowReverse":
        call = f"bhvit::window_reverse<{h}, {w}, {win}, {pooled}, {c}, {pe}, {in_bits}>(in0, out, rows / {rows_img})"
        out_bits = in_bits
    elif op == "PooledUpsample":
        side = math.isqrt(pooled)
        if side < 1 or side * side != pooled or h % side or w % side or h // side != w // side:
            raise ValueError(f"{name}: {pooled} pooled tokens do not upsample to the {h}x{w} map")
        call = (f"bhvit::pooled_upsample<{h}, {w}, {win}, {side}, {c}, {pe}, {in_bits}, {sg}, {out_bits}>"
                f"(in0, out, rows / {rows_img})")
    else:
        raise NotImplementedError(f"{name}: no window kernel for {op}")
    code = (f"void {fn}(hls::stream<ap_uint<{pe * in_bits}> > &in0, hls::stream<ap_uint<{pe * out_bits}> > &out, "
            f"unsigned rows) {{\n    {call};\n}}\n")
    return NodeCode(name, fn, code, [s_in], stream(c, pe, out_bits, op == "PooledUpsample" or in_signed),
                    rows_out_per_in=(h * w, rows_img))


def _pooled_tokens(graph, tensor: str) -> int:
    """Pooled tokens per image of a stream computed from a TokenPool (walking up its producers)."""
    producers = {o: n for n in graph.nodes for o in n.outputs}
    todo, seen = [tensor], set()
    while todo:
        t = todo.pop()
        n = producers.get(t)
        if n is None or t in seen:
            continue
        seen.add(t)
        if n.op == "TokenPool":
            return (n.attrs["H"] // n.attrs["k"]) * (n.attrs["W"] // n.attrs["k"])
        todo.extend(n.inputs)
    raise ValueError(f"{tensor}: no TokenPool upstream, cannot tell the pooled tokens per image")

SUPPORTED = ("Thresholding", "MVAU", "XnorConv2d", "Affine", "RPReLU", "Lut", "ShiftBranch", "ShiftConv",
             "RepeatChannels", "GroupSumChannels", "TokenPool", "TokenSum", "IntConv2d", "IntLinear", "IntLayerNorm",
             "QDAttention", "AttentionTokens", "WindowReverse", "PooledUpsample")


def check_graph_nodes(graph, images_nhwc, ops=SUPPORTED, progress: bool = False) -> dict:
    """Every node of these op types, compiled together into one testbench and run
    on the golden input streams of these images: {node name: output == golden}."""
    from tqdm import tqdm

    from .graph import run as run_golden
    trace: dict = {}
    run_golden(graph, images_nhwc, trace)
    trace[graph.input] = np.asarray(images_nhwc, dtype=np.int64)
    nodes = [n for n in graph.nodes if n.op in ops]
    codes = [node_code(graph, n, trace[n.outputs[0]].shape[-1], trace[n.inputs[0]].shape[1]) for n in nodes]
    exe = build(codes, f"graph{len(codes)}", progress=progress)
    result = {}
    for i, (n, code) in enumerate(tqdm(list(zip(nodes, codes)), desc="csim nodes", disable=not progress)):
        xs = []
        for t, s in zip(n.inputs, code.inputs):
            xs.append(trace[t].reshape(-1, s["width"]))
        want = trace[n.outputs[0]]
        got = run(exe, i, *xs)
        result[n.name] = bool(np.array_equal(got, want.reshape(got.shape)))
    return result
