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

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from flows.common import (board_dict, command_line, estimate_fabric, fabric_lines, flow_parser, golden_data,
                          plot_cycles_and_resources, prepare_or_exit, write_folding)
# re-exported: flows.hls was their home before flows/sim.py shared them
from flows.common import (DEFAULT_MAX_UTIL, DEFAULT_TARGET_CYCLES, DesignTooLargeError, estimate,  # noqa: F401
                          fold_for_board)
from flows.common import write_report as write_report_files

COSIM_IMAGES = 2                   # Vitis C/RTL co-simulation simulates every cycle: a few images


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
    md += fabric_lines(res["fabric"], "hw.cost's estimate, FIFOs included")
    md += ["Slowest nodes:", "", "| node | op | PE | SIMD | cycles/image |", "|---|---|---|---|---|"]
    for r in sorted(cost["nodes"], key=lambda r: -r["cycles"])[:10]:
        md.append(f"| {r['name']} | {r['op']} | {r['PE']} | {r['SIMD'] or ''} | {r['cycles']:,} |")
    md += ["", "![cycles per node and resources](report.png)", ""]
    write_report_files(folder, res, md, plot)


def plot(path: Path, res: dict) -> None:
    cost, est = res["estimate"]["cost"], res["estimate"]
    plot_cycles_and_resources(
        path, f"{res['model']}: bottleneck {cost['bottleneck']} ({cost['cycles_per_image']:,} cycles)", cost["nodes"],
        cost["bottleneck"], {"estimate": {k.upper(): 100 * est["utilisation"][k] for k in ("luts", "bram36", "dsps")}},
        res["board"]["part"], limit=100 * res["max_util"], resources_title="estimated resources")


def main(argv=None) -> int:
    p = flow_parser("flows.hls", __doc__, 0, "parallel g++ jobs (default: all cores)")
    p.add_argument("--csim-images", type=int, default=200, help="test images through the C simulation (default 200)")
    p.add_argument("--steps", default="csim,csynth,cosim,export", help="Vitis HLS steps in vitis_hls.tcl")
    a = p.parse_args(argv)
    t0 = time.time()
    from hw import csim, hls_top
    pr = prepare_or_exit(a, "hls", hls_top.design)
    if pr is None:
        return 2
    board, inp, graph, design, est, source = pr.board, pr.inp, pr.graph, pr.design, pr.est, pr.folding_source
    folder = inp.out

    # ---- the project folder
    files = hls_top.write_sources(design, folder)
    write_folding(folder, graph)
    n = min(a.csim_images, len(inp.test.images))
    images, logits = golden_data(graph, inp.test, n)
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
        exe = csim.build_project(files, jobs=a.jobs or None)
        t2 = time.time()
        run = csim.run_testbench(exe, images, logits, folder / "csim")
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
    cost = est["cost"]
    fab = estimate_fabric(est, design, cost["cycles_per_image"], cost["images_per_s"])
    print(f"[hls] XNOR lanes busy {100 * fab['lanes']['utilisation']:.1f} % ({fab['lanes']['lanes']:,} lanes); "
          f"{fab['macs_per_s_per_lut']:,.3g} binary MACs/s per LUT (cost model)")
    res = dict(model=inp.name, checkpoint=str(a.ckpt), command=command_line("flows.hls", argv), board=board_dict(board), max_util=a.max_util,
        folding_source=source, estimate=est, fabric=fab,
        csim=dict(images=n, equal=equal, mismatched_images=run["mismatched_images"], compiler=gxx,
                  ap_types=str(csim.ap_types_dir()), build_s=round(t2 - t1, 1), run_s=round(t3 - t2, 2)),
        vendor=vendor, files=dict(sources=len(files["sources"]), folder=str(folder)), seconds=round(time.time() - t0, 1))
    write_report(folder, res)
    print(f"[hls] wrote {folder}/report.md, report.json, report.png ({res['seconds']:.0f} s)")
    return 0 if equal and not any(v.startswith("failed") for v in vendor.values()) else 1


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
