"""C simulation of the HLS kernels with g++ and Xilinx's ap_types headers.

The kernels are the C++ templates in ``templates/hls/``; a Jinja2 testbench
instantiates one for a node's sizes, folding and parameters (weights and
thresholds as initialised constant arrays, as the HLS build will store them),
g++ compiles it warning-free (``-Wall -Werror``) and it runs on a .npy stream.
Binaries are cached under ``build/csim/`` by a hash of their sources.

Headers: ``$XILINX_HLS/include`` where Vitis HLS is installed, else the
Apache-2.0 ap_types headers that ``make setup`` takes from the hls4ml wheel
into ``.venv/ap_types``.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates" / "hls"
CACHE = ROOT / "build" / "csim"
# the flags of ../shared/spec/toolchain.md, plus -Werror: a warning fails the build
CXXFLAGS = ["-std=c++14", "-O1", "-Wall", "-Werror", "-Wno-unknown-pragmas", "-Wno-uninitialized",
            "-Wno-maybe-uninitialized"]


class CsimError(RuntimeError):
    """The C simulation could not be built or run."""


class FoldingError(ValueError):
    """A PE / SIMD value that does not divide the size it folds."""


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
                              keep_trailing_newline=True)


def check_fold(node: str, what: str, size: int, value: int) -> None:
    if value < 1 or size % value:
        legal = [d for d in range(1, size + 1) if size % d == 0]
        raise FoldingError(f"{node}: {what}={value} does not divide {size}; legal values: {legal}")


def _hex_words(bits: np.ndarray) -> list[str]:
    """(n, width) 0/1 -> hex strings of width-bit words, element e at bit e."""
    bits = np.asarray(bits, dtype=np.uint8)
    out = []
    for row in bits:
        v = int("".join(str(int(b)) for b in row[::-1]), 2) if row.size else 0
        out.append(format(v, "x"))
    return out


def build(source: str, name: str) -> Path:
    """Compile a testbench (cached by the hash of source, headers and flags)."""
    inc = ap_types_dir()
    lib = "".join((TEMPLATES / f).read_text() for f in sorted(os.listdir(TEMPLATES)) if f.endswith(".hpp"))
    key = hashlib.sha256("\n".join([source, lib, str(inc), " ".join(CXXFLAGS)]).encode()).hexdigest()[:16]
    exe = CACHE / f"{name}-{key}"
    if exe.exists():
        return exe
    CACHE.mkdir(parents=True, exist_ok=True)
    src = CACHE / f"{name}-{key}.cpp"
    src.write_text(source)
    tmp = exe.with_suffix(".part")
    cmd = ["g++", *CXXFLAGS, "-isystem", str(inc), "-I", str(TEMPLATES), str(src), "-o", str(tmp)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise CsimError(f"g++ failed for {name} ({src}):\n{res.stderr[-4000:]}")
    tmp.replace(exe)
    return exe


def run(exe: Path, *xs: np.ndarray) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        fins = [Path(d) / f"in{i}.npy" for i in range(len(xs))]
        fout = Path(d) / "out.npy"
        for f, x in zip(fins, xs):
            np.save(f, np.ascontiguousarray(x, dtype=np.int64))
        res = subprocess.run([str(exe), *map(str, fins), str(fout)], capture_output=True, text=True)
        if res.returncode != 0:
            raise CsimError(f"{exe.name} exited with {res.returncode}: {res.stderr.strip()}")
        return np.load(fout)


# ---------------------------------------------------------------------- kernels
def _stream(width: int, elems: int, bits: int, signed: bool = False) -> dict:
    """A stream of rows of ``width`` values, ``elems`` values of ``bits`` bits per word."""
    return dict(width=width, folds=width // elems, elems=elems, bits=bits, signed=signed)


def mvau_xnor(x_bits, w_bits, simd: int, pe: int, name: str = "mvau") -> np.ndarray:
    """C simulation of ``bhvit::mvau_xnor``: x_bits (reps, MW) 0/1, w_bits (MH, MW)
    0/1 -> (reps, MH) popcounts of xnor(x, w[n])."""
    w_bits = np.asarray(w_bits)
    mh, mw = w_bits.shape
    check_fold(name, "SIMD", mw, simd)
    check_fold(name, "PE", mh, pe)
    sf, nf = mw // simd, mh // pe
    ob = int(mw).bit_length()
    # weights[pe][nf * SF + sf] = inputs sf*SIMD.. of output nf*PE + pe
    rows = []
    for p in range(pe):
        words = []
        for f in range(nf):
            words += _hex_words(w_bits[f * pe + p].reshape(sf, simd))
        rows.append("{" + ", ".join(f'ap_uint<{simd}>("{h}", 16)' for h in words) + "}")
    params = (f"static const ap_uint<{simd}> weights[{pe}][{nf * sf}] = {{\n    " + ",\n    ".join(rows) + "};")
    src = _env().get_template("kernel_tb.cpp.j2").render(
        kernel="mvau_xnor", name=name, params=params, inputs=[_stream(mw, simd, 1)], out=_stream(mh, pe, ob),
        call=f"bhvit::mvau_xnor<{mw}, {mh}, {simd}, {pe}, {ob}>(in0, out, weights, rows)")
    return run(build(src, name), np.asarray(x_bits, dtype=np.int64))


def threshold_sign(x, thresholds, in_bits: int, pe: int, name: str = "threshold") -> np.ndarray:
    """C simulation of ``bhvit::threshold_sign``: x (reps, C) signed in_bits-bit
    integers -> (reps, C) bits, 1 where x >= t[c]."""
    t = np.asarray(thresholds, dtype=np.int64).reshape(-1)
    c = t.size
    check_fold(name, "PE", c, pe)
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    t = np.clip(t, lo, hi + 1)                # always / never: the compare is unchanged on [lo, hi]
    cf = c // pe
    rows = ["{" + ", ".join(str(int(t[f * pe + p])) for f in range(cf)) + "}" for p in range(pe)]
    params = f"static const ap_int<{in_bits + 1}> thr[{pe}][{cf}] = {{" + ", ".join(rows) + "};"
    src = _env().get_template("kernel_tb.cpp.j2").render(
        kernel="threshold_sign", name=name, params=params, inputs=[_stream(c, pe, in_bits)], out=_stream(c, pe, 1),
        call=f"bhvit::threshold_sign<{c}, {pe}, {in_bits}>(in0, out, thr, rows)")
    return run(build(src, name), np.asarray(x, dtype=np.int64))


def _table(v: np.ndarray, pe: int) -> str:
    """(C,) -> C++ initialiser of a [PE][C/PE] array, channel c = cf * PE + pe."""
    cf = v.size // pe
    return "{" + ", ".join("{" + ", ".join(str(int(v[f * pe + p])) for f in range(cf)) + "}"
                           for p in range(pe)) + "}"


def _signed_bits(v) -> int:
    """Bits of the smallest signed type holding every value of v."""
    v = np.asarray(v, dtype=np.int64)
    m = int(max(v.max(initial=0), -v.min(initial=0) - 1))
    return max(m.bit_length() + 1, 2)


def fixed_node(kind: str, xs, in_bits, signed, mults: dict, bias, shift: int, out_bits: int, pe: int,
               lshifts=None, pc_k=None, name: str = "fixed") -> np.ndarray:
    """C simulation of a generated fixed-point node (``kind`` "affine" or "rprelu").

    xs: list of (rows, C) integer streams with their bit widths / signedness;
    mults: {"m0": (C,), ...} for affine, {"m_pos", "m_neg"} for rprelu;
    bias: (C,) per channel or (T, C), row t of every T consecutive rows (tokens)."""
    xs = [np.asarray(x, dtype=np.int64) for x in xs]
    c = xs[0].shape[1]
    check_fold(name, "PE", c, pe)
    n = len(xs)
    lshifts = list(lshifts or [0] * n)
    pc_k = list(pc_k or [0] * n)
    if any(l < 0 for l in lshifts):
        raise ValueError(f"{name}: negative left shift {lshifts}")
    bias = np.asarray(bias, dtype=np.int64)
    bias = bias.reshape(1, c) if bias.ndim == 1 else bias.reshape(-1, c)
    # accumulator: large enough for the worst case of every term plus the bias
    bound = int(np.abs(bias).max(initial=0))
    for i in range(n):
        xmax = (1 << in_bits[i]) if not pc_k[i] else 2 * (1 << in_bits[i]) + pc_k[i]
        ms = [np.abs(mults[k]).max(initial=0) for k in (["m_pos", "m_neg"] if kind == "rprelu" else [f"m{i}"])]
        bound += xmax * int(max(ms)) << lshifts[i]
    acc_bits = bound.bit_length() + 2
    if acc_bits > 62:
        raise ValueError(f"{name}: accumulator of {acc_bits} bits exceeds the 62 the golden model keeps exact")
    fn = "node_" + "".join(ch if ch.isalnum() else "_" for ch in name)
    inputs = [dict(bits=in_bits[i], signed=bool(signed[i]), lshift=lshifts[i], pc_k=pc_k[i]) for i in range(n)]
    mlist = [dict(name=k, bits=_signed_bits(v), init=_table(np.asarray(v).reshape(-1), pe)) for k, v in mults.items()]
    binit = "{" + ", ".join(_table(row, pe) for row in bias) + "}"
    node = _env().get_template("fixed_node.hpp.j2").render(
        kind=kind, name=name, fn=fn, pe=pe, cf=c // pe, inputs=inputs, mults=mlist, bias_bits=_signed_bits(bias),
        bias_rows=bias.shape[0], bias_init=binit, acc_bits=acc_bits, shift=shift, out_bits=out_bits)
    src = _env().get_template("kernel_tb.cpp.j2").render(
        kernel=kind, name=name, params=node, inputs=[_stream(c, pe, in_bits[i], signed[i]) for i in range(n)],
        out=_stream(c, pe, out_bits, True),
        call=f"{fn}({', '.join(f'in{i}' for i in range(n))}, out, rows)")
    return run(build(src, name), *xs)
