"""`make hls BOARD=pynq-z2`: a trained checkpoint -> a Vitis HLS / Vivado project.

    python -m flows.hls --board pynq-z2 --ckpt checkpoints/bhvit_pynq_fmnist/model.pt

Steps, each a function of the previous result:

1. the board (flows/boards.py): part, clock, resources; an unknown name lists the known ones;
2. the integer network and its dataflow graph (hw.intnet, hw.graph), folded (PE / SIMD per
   node) for ``--target-cycles`` per image within the board (``--max-util`` of its LUT, BRAM
   and DSP), or from ``--folding`` (a folding.json of an earlier run, edited by hand);
3. the estimate (hw.cost plus the top's FIFOs) checked against the device *before* any file
   is written: a design that does not fit is reported with its numbers, exit code 2;
4. the project folder ``build/<model>/hls_<board>/``: src/ (kernel library, one .cpp per
   node, the dataflow top ``bhvit_top`` with AXI-Stream in / out and AXI-Lite control),
   tb/ (testbench + test images and the golden logits), folding.json, vitis_hls.tcl
   (csim, csynth, cosim, export IP), vivado.tcl (block design: Zynq PS, AXI DMA, the
   accelerator -> .bit + .hwh), report.json / report.md / report.png;
5. C simulation here: g++ against Xilinx's ap_types headers, ``--csim-images`` test
   images through the whole top, logits compared with the golden model (np.array_equal);
6. vitis_hls and vivado when they are on PATH; otherwise the exact commands to run where
   they are.

Exit codes: 0 done (C simulation bit-exact), 1 C simulation differs from golden, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_TARGET_CYCLES = 10000      # 10k images/s at 100 MHz
COSIM_IMAGES = 2                   # Vitis C/RTL co-simulation simulates every cycle: a few images
DEFAULT_MAX_UTIL = 0.90            # of the device's LUT / BRAM / DSP: the rest is for the DMA and interconnect


class DesignTooLargeError(ValueError):
    """The estimated design does not fit the board; the message has the numbers."""


def estimate(graph, image_shape, board, design=None) -> dict:
    """hw.cost's per-node estimate plus the top's FIFOs, against the board."""
    from hw.cost import BRAM36_BITS, LUTRAM_MAX_BITS, graph_cost
    cost = graph_cost(graph, image_shape, board.clock_mhz)
    fifo_bram = fifo_luts = 0
    if design is not None:
        for c in design.channels:
            bits = c.bits * c.depth
            if bits > LUTRAM_MAX_BITS:            # a BRAM36 is at most 72 bits wide (512 deep)
                fifo_bram += max(-(-bits // BRAM36_BITS), -(-c.bits // 72))
            else:
                fifo_luts += -(-bits // 64) + 8          # LUTRAM + pointers
    used = dict(luts=cost["luts"] + fifo_luts, bram36=cost["bram36"] + fifo_bram, dsps=cost["dsps"])
    avail = dict(luts=board.luts, bram36=board.bram36, dsps=board.dsps)
    util = {k: used[k] / avail[k] if avail[k] else float("inf") for k in used}
    return dict(cost=cost, used=used, available=avail, utilisation=util, fifo_bram36=fifo_bram, fifo_luts=fifo_luts)


def resource_lines(est: dict, max_util: float) -> list:
    return [f"{k.upper():6s} {est['used'][k]:>8,} of {est['available'][k]:>8,} ({100 * est['utilisation'][k]:5.1f} %, "
            f"limit {100 * max_util:.0f} %){'  <-- over' if est['utilisation'][k] > max_util else ''}"
            for k in ("luts", "bram36", "dsps")]


def fits(est: dict, max_util: float) -> bool:
    return all(u <= max_util for u in est["utilisation"].values())


def fold_for_board(graph, image_shape, board, target_cycles: int, max_util: float) -> dict:
    """hw.cost.fold_for_target at the target; while the estimate exceeds the board, relax the
    target (x1.5) until it fits.  Returns {'target_cycles', 'relaxed', 'estimate'}; raises
    DesignTooLargeError when even the slowest folding does not fit."""
    from hw.cost import fold_for_target
    target = target_cycles
    for _ in range(40):
        fold_for_target(graph, image_shape, target)
        est = estimate(graph, image_shape, board)
        if fits(est, max_util):
            return dict(target_cycles=target, relaxed=target != target_cycles, estimate=est)
        if est["cost"]["cycles_per_image"] < target:       # already at PE = SIMD = 1 where it matters
            break
        target = int(target * 1.5)
    raise DesignTooLargeError(f"the design does not fit {board.name} ({board.part}) even at the slowest folding:\n  "
                              + "\n  ".join(resource_lines(est, max_util))
                              + "\nChoose a larger board (--board), or a smaller model.")


def _csim_data(graph, test, n: int):
    from hw.graph import run
    images = test.images[:n].numpy().transpose(0, 2, 3, 1).astype(np.int64)
    return images, run(graph, images)


def vendor_commands(folder: Path | None = None) -> list:
    cd = f"cd {folder} && " if folder else ""
    return [f"{cd}vitis_hls -f vitis_hls.tcl", f"{cd}vivado -mode batch -source vivado.tcl"]


def run_vendor(folder: Path, log) -> dict:
    """Run vitis_hls then vivado where they are on PATH; say what to run where they are not."""
    out = {}
    for tool, args, script in (("vitis_hls", ["-f"], "vitis_hls.tcl"),
                               ("vivado", ["-mode", "batch", "-source"], "vivado.tcl")):
        if shutil.which(tool) is None:
            out[tool] = "not on PATH: skipped"
            continue
        if tool == "vivado" and out.get("vitis_hls", "").startswith(("failed", "not")):
            out[tool] = "skipped: the HLS IP was not exported"
            continue
        log(f"[hls] running {tool} {' '.join(args)} {script} (log: {folder}/{tool}.log)")
        with open(folder / f"{tool}.log", "w") as fh:
            rc = subprocess.run([tool, *args, script], cwd=folder, stdout=fh, stderr=subprocess.STDOUT).returncode
        out[tool] = "ok" if rc == 0 else f"failed (exit {rc}, see {tool}.log)"
    return out


def write_report(folder: Path, res: dict) -> None:
    from model.checkpoint import atomic_write_bytes
    atomic_write_bytes(folder / "report.json", lambda fh: fh.write(json.dumps(res, indent=2, default=str).encode()))
    est, cost, cs = res["estimate"], res["estimate"]["cost"], res["csim"]
    b = res["board"]
    md = [f"# HLS project of {res['model']} for {b['name']} ({b['part']}, {b['clock_mhz']:.0f} MHz)", "",
          f"Command: `{res['command']}`", "",
          f"Folding: {res['folding_source']}; bottleneck `{cost['bottleneck']}` at {cost['cycles_per_image']:,} "
          f"cycles/image -> **{cost['images_per_s']:,.0f} images/s** at {b['clock_mhz']:.0f} MHz (cost model); "
          f"latency of one image at most ~{cost['latency_cycles']:,} cycles (every node's cycles in sequence).", "",
          "| resource | estimated | device | utilisation |", "|---|---|---|---|"]
    for k in ("luts", "bram36", "dsps"):
        md.append(f"| {k.upper()} | {est['used'][k]:,} | {est['available'][k]:,} | {100 * est['utilisation'][k]:.1f} % |")
    md += ["", f"FIFOs between the {len(cost['nodes'])} kernels: {est['fifo_bram36']} BRAM36 + {est['fifo_luts']} LUT "
               f"(included above). The LUT / BRAM / DSP numbers are hw.cost's analytical estimate; Vitis HLS "
               f"synthesis (vitis_hls.tcl) gives the real ones.", "",
           f"C simulation (g++ {res['csim']['compiler']}, ap_types from `{cs['ap_types']}`) of the whole top on "
           f"{cs['images']} test images: **{'bit-exact' if cs['equal'] else 'MISMATCH'}** "
           f"({cs['mismatched_images']} images differ from the golden logits, np.array_equal); "
           f"build {cs['build_s']:.0f} s, run {cs['run_s']:.1f} s.", "",
           "Vendor steps: " + "; ".join(f"`{k}`: {v}" for k, v in res["vendor"].items()) + ".", ""]
    if any(v.startswith("not on PATH") for v in res["vendor"].values()):
        md += ["Where Vitis HLS and Vivado are installed, in this folder:", "", "```", *vendor_commands(), "```", ""]
    md += ["Slowest nodes:", "", "| node | op | PE | SIMD | cycles/image |", "|---|---|---|---|---|"]
    for r in sorted(cost["nodes"], key=lambda r: -r["cycles"])[:10]:
        md.append(f"| {r['name']} | {r['op']} | {r['PE']} | {r['SIMD'] or ''} | {r['cycles']:,} |")
    md += ["", "![cycles per node and resources](report.png)", ""]
    atomic_write_bytes(folder / "report.md", lambda fh: fh.write("\n".join(md).encode()))
    plot(folder / "report.png", res)


def plot(path: Path, res: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cost, est = res["estimate"]["cost"], res["estimate"]
    rows = cost["nodes"]
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw=dict(width_ratios=[4, 1]))
    cyc = [r["cycles"] for r in rows]
    colors = ["tab:red" if r["name"] == cost["bottleneck"] else "tab:blue" for r in rows]
    a0.bar(range(len(rows)), cyc, color=colors, width=1.0)
    a0.set_yscale("log")
    a0.set_xlabel("node (graph order)")
    a0.set_ylabel("cycles per image")
    a0.set_title(f"{res['model']}: bottleneck {cost['bottleneck']} ({cost['cycles_per_image']:,} cycles)")
    keys = ["luts", "bram36", "dsps"]
    a1.bar([k.upper() for k in keys], [100 * est["utilisation"][k] for k in keys], color="tab:green")
    a1.axhline(100 * res["max_util"], color="k", ls="--", lw=1)
    a1.set_ylabel(f"% of {res['board']['part']}")
    a1.set_title("estimated resources")
    fig.tight_layout()
    tmp = path.with_suffix(".part.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv=None) -> int:
    from flows.boards import UnknownBoardError, get_board
    p = argparse.ArgumentParser(prog="python -m flows.hls", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="pynq-z2", help="target board (default pynq-z2)")
    p.add_argument("--target-cycles", type=int, default=DEFAULT_TARGET_CYCLES,
                   help=f"cycles per image the folding aims at (default {DEFAULT_TARGET_CYCLES}); relaxed if the "
                        "design would not fit the board")
    p.add_argument("--max-util", type=float, default=DEFAULT_MAX_UTIL,
                   help=f"largest fraction of the device's LUT / BRAM / DSP the estimate may use (default {DEFAULT_MAX_UTIL})")
    p.add_argument("--folding", default=None, help="folding JSON ({node: {PE, SIMD}}), e.g. a folding.json of an earlier run")
    p.add_argument("--csim-images", type=int, default=200, help="test images through the C simulation (default 200)")
    p.add_argument("--steps", default="csim,csynth,cosim,export", help="Vitis HLS steps in vitis_hls.tcl")
    p.add_argument("--jobs", type=int, default=0, help="parallel g++ jobs (default: all cores)")
    from hw.cli import add_common_args
    add_common_args(p)
    a = p.parse_args(argv)
    t0 = time.time()
    try:
        board = get_board(a.board)
    except UnknownBoardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not 0 < a.max_util <= 1:
        print(f"error: --max-util must be in (0, 1], got {a.max_util}", file=sys.stderr)
        return 2
    from hw import csim, hls_top
    from hw.cli import HwInputError, load_inputs
    from hw.cost import FoldingError, check_folding
    from hw.export import apply_folding_file, folding_of
    from hw.onnx_graph import stream_shapes
    try:
        inp = load_inputs(a, f"hls_{board.name}")
    except HwInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    net, model, folder = inp.net, inp.model, inp.out
    graph = net.graph
    image_shape = (model.cfg.img_size, model.cfg.img_size, model.cfg.in_chans)
    try:
        if a.folding:
            apply_folding_file(graph, a.folding, "`make hls`")
            check_folding(graph, stream_shapes(graph, 1, image_shape))
            source = f"from {a.folding}"
        else:
            fb = fold_for_board(graph, image_shape, board, a.target_cycles, a.max_util)
            source = (f"hw.cost.fold_for_target at {fb['target_cycles']:,} cycles/image"
                      + (f" (relaxed from {a.target_cycles:,} to fit {board.name})" if fb["relaxed"] else ""))
            if fb["relaxed"]:
                print(f"[hls] note: {a.target_cycles:,} cycles/image does not fit {board.name}; folded for "
                      f"{fb['target_cycles']:,}")
        design = hls_top.design(graph, image_shape, inp.name)
        est = estimate(graph, image_shape, board, design)
        if not fits(est, a.max_util):
            raise DesignTooLargeError(f"the design is estimated over {board.name}'s resources ({board.part}):\n  "
                                      + "\n  ".join(resource_lines(est, a.max_util))
                                      + "\nFold it less (fewer PE / SIMD in the folding JSON, or a larger "
                                        "--target-cycles) or choose a larger board.")
    except (FoldingError, DesignTooLargeError, hls_top.DesignError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cost = est["cost"]
    print(f"[hls] {board.name} ({board.part}, {board.clock_mhz:.0f} MHz): {len(graph.nodes)} nodes, bottleneck "
          f"{cost['bottleneck']} {cost['cycles_per_image']:,} cycles/image -> {cost['images_per_s']:,.0f} images/s")
    for line in resource_lines(est, a.max_util):
        print(f"[hls]   {line}")

    # ---- the project folder
    from model.checkpoint import atomic_write_bytes
    files = hls_top.write_sources(design, folder)
    atomic_write_bytes(folder / "folding.json", lambda fh: fh.write(json.dumps(folding_of(graph), indent=1).encode()))
    n = min(a.csim_images, len(inp.test.images))
    images, logits = _csim_data(graph, inp.test, n)
    tb_dir = folder / "tb"
    np.save(tb_dir / "images.npy", images)
    np.save(tb_dir / "expected.npy", logits)
    np.save(tb_dir / "images_cosim.npy", images[:COSIM_IMAGES])      # RTL co-simulation: a few images
    np.save(tb_dir / "expected_cosim.npy", logits[:COSIM_IMAGES])
    write_tcl(folder, files, board, design, inp.name, [s.strip() for s in a.steps.split(",") if s.strip()])
    print(f"[hls] wrote {folder}/ (src/ {len(files['sources'])} sources, tb/, folding.json, vitis_hls.tcl, vivado.tcl)")

    # ---- C simulation
    t1 = time.time()
    try:
        exe = hls_top.build(files, jobs=a.jobs or None)
        t2 = time.time()
        run = hls_top.run_testbench(exe, images, logits, folder / "csim")
    except csim.CsimError as exc:
        print(f"error: C simulation failed: {exc}", file=sys.stderr)
        return 1
    t3 = time.time()
    equal = run["returncode"] == 0 and bool(np.array_equal(run["logits"], logits))
    print(f"[hls] C simulation of the whole top on {n} test images: "
          f"{'bit-exact with the golden model' if equal else 'MISMATCH: ' + str(run['mismatched_images']) + ' images differ'}"
          f" (build {t2 - t1:.0f} s, run {t3 - t2:.1f} s)")

    vendor = run_vendor(folder, print)
    if any(v.startswith("not on PATH") for v in vendor.values()):
        print("[hls] Vitis HLS / Vivado are not on PATH here: synthesis, co-simulation and the bitstream were "
              "skipped. Where they are installed, run:")
        for c in vendor_commands(folder.resolve()):
            print(f"        {c}")
    gxx = subprocess.run(["g++", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    res = dict(model=inp.name, checkpoint=str(a.ckpt), command="python -m flows.hls " + " ".join(
        argv if argv is not None else sys.argv[1:]), board=board_dict(board), max_util=a.max_util,
        folding_source=source, estimate=est,
        csim=dict(images=n, equal=equal, mismatched_images=run["mismatched_images"], compiler=gxx,
                  ap_types=str(csim.ap_types_dir()), build_s=round(t2 - t1, 1), run_s=round(t3 - t2, 2)),
        vendor=vendor, files=dict(sources=len(files["sources"]), folder=str(folder)), seconds=round(time.time() - t0, 1))
    write_report(folder, res)
    print(f"[hls] wrote {folder}/report.md, report.json, report.png ({res['seconds']:.0f} s)")
    return 0 if equal and not any(v.startswith("failed") for v in vendor.values()) else 1


def board_dict(board) -> dict:
    from dataclasses import asdict
    return asdict(board)


def write_tcl(folder: Path, files: dict, board, design, model_name: str, steps: list) -> None:
    from hw.hls_top import IN_AXIS_BITS, TOP
    from model.checkpoint import atomic_write_bytes

    from flows.tcl import render_vitis_hls_tcl, render_vivado_tcl
    rel = lambda p: str(Path(p).relative_to(folder))          # noqa: E731  (the scripts run in the folder)
    hls = render_vitis_hls_tcl(project="bhvit_hls", top=TOP, sources=[rel(s) for s in files["sources"]],
                               include_dirs=[rel(files["include"])], tb_sources=[rel(t) for t in files["tb"]],
                               tb_data=["tb/images.npy", "tb/expected.npy", "tb/images_cosim.npy",
                                        "tb/expected_cosim.npy"], tb_argv="images.npy expected.npy",
                               cosim_argv="images_cosim.npy expected_cosim.npy",
                               part=board.part, clock_period_ns=round(1000.0 / board.clock_mhz, 3), steps=steps,
                               ip=dict(vendor="bhvit.org", library="hls", name=TOP, version="1.0"))
    viv = render_vivado_tcl(board, ip_repo="bhvit_hls/solution1/impl/ip", ip_vlnv=f"bhvit.org:hls:{TOP}:1.0",
                            ip_name=TOP, design=model_name, in_bits=IN_AXIS_BITS, out_bits=design.out_axis_bits,
                            out_dir="bitstream", jobs=4)
    atomic_write_bytes(folder / "vitis_hls.tcl", lambda fh: fh.write(hls.encode()))
    atomic_write_bytes(folder / "vivado.tcl", lambda fh: fh.write(viv.encode()))


if __name__ == "__main__":
    sys.exit(main())
