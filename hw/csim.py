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


def run(exe: Path, x: np.ndarray) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        fin, fout = Path(d) / "in.npy", Path(d) / "out.npy"
        np.save(fin, np.ascontiguousarray(x, dtype=np.int64))
        res = subprocess.run([str(exe), str(fin), str(fout)], capture_output=True, text=True)
        if res.returncode != 0:
            raise CsimError(f"{exe.name} exited with {res.returncode}: {res.stderr.strip()}")
        return np.load(fout)


# ---------------------------------------------------------------------- kernels
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
        kernel="mvau_xnor", name=name, params=params, in_width=mw, in_folds=sf, in_elems=simd, in_bits=1,
        out_width=mh, out_folds=nf, out_elems=pe, out_bits=ob,
        call=f"bhvit::mvau_xnor<{mw}, {mh}, {simd}, {pe}, {ob}>(in, out, weights, reps)")
    exe = build(src, name)
    return run(exe, np.asarray(x_bits, dtype=np.int64))


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
        kernel="threshold_sign", name=name, params=params, in_width=c, in_folds=cf, in_elems=pe, in_bits=in_bits,
        out_width=c, out_folds=cf, out_elems=pe, out_bits=1,
        call=f"bhvit::threshold_sign<{c}, {pe}, {in_bits}>(in, out, thr, reps)")
    exe = build(src, name)
    return run(exe, np.asarray(x, dtype=np.int64))
