"""The timing estimate of a whole design without simulating it: for comparing checkouts.

    .venv/bin/python benchmarks/design_timing.py --sized build/bhvit_pynq_fmnist/sim_pynq-z2 \
        [--ckpt checkpoints/bhvit_pynq_fmnist/model.pt] [--board pynq-z2] [--clock 100] [--out timing.json]
    .venv/bin/python benchmarks/design_timing.py --board zcu104 --clock 200

`make sim` writes the same estimate (hw.timing.design_timing) after its RTL simulation and Yosys
counts. This script runs only the estimate, on the folding and FIFO depths of an earlier sized
`make sim` run (``--sized``: the folder holding its folding.json and fifo_depths.json), so two
checkouts can be compared on the same design: copy that folder, then run this script in each
checkout. Without ``--sized`` it times the design `make sim` would build before its FIFO sizing
(the board's default folding, the delay model's FIFO depths). Per-module results are cached under build/timing, so a second run only re-times the
modules whose source changed. It prints the 10 worst paths and the worst ready chain, and writes
the whole estimate to ``--out`` as JSON.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sized", default=None,
                   help="folder of a sized `make sim` run (folding.json, fifo_depths.json); default: the board's folding")
    p.add_argument("--ckpt", default="checkpoints/bhvit_pynq_fmnist/model.pt")
    p.add_argument("--board", default="pynq-z2")
    p.add_argument("--clock", type=float, default=None, help="MHz (default the board's)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=None, help="write the estimate here as JSON")
    a = p.parse_args(argv)
    for f in ("folding.json", "fifo_depths.json") if a.sized else ():
        if not os.path.exists(os.path.join(a.sized, f)):
            print(f"error: {a.sized} has no {f}: run `make sim` first (it writes both into its folder)", file=sys.stderr)
            return 2
    from flows.common import FlowInputError, apply_fifo_depths, flow_parser, load_fifo_depths, prepare
    from hw import rtl_top, timing
    sized = ["--folding", os.path.join(a.sized, "folding.json"),
             "--max-util", "1"] if a.sized else []   # the sized run's tables in block RAM count its smaller FIFOs
    args = flow_parser("design_timing", "", a.jobs, "").parse_args(["--ckpt", a.ckpt, "--board", a.board, *sized])
    try:
        pr = prepare(args, "sim", rtl_top.rtl_design)
    except FlowInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.sized:
        apply_fifo_depths(pr.design, load_fifo_depths(os.path.join(a.sized, "fifo_depths.json")))
    model = timing.delay_model(pr.board)
    t0 = time.time()
    tim = timing.design_timing(pr.graph, pr.image_shape, pr.inp.name, d=pr.design, clock_mhz=a.clock or pr.board.clock_mhz,
                               family=model.name.split("-")[0], jobs=a.jobs, delay=model)
    print(f"{pr.inp.name} on {pr.board.name}, {model.name}: worst path {tim['worst_ns']:.2f} ns ({tim['worst_kind']} "
          f"{tim['worst_path']}) at {tim['clock_mhz']:g} MHz: {'meets' if tim['meets'] else 'MISSES'} "
          f"({time.time() - t0:.0f} s)")
    for q in tim["paths"]:
        print(f"  {q['total_ns']:6.2f} ns  {q['kind']:6s} {q['name']}: {q['start']} -> {q['end']}, "
              f"{q['cells']} cells, {q['nets']} nets")
    chain = max(tim["ready_paths"], key=lambda q: q["total_ns"], default=None)
    if chain:
        print(f"  worst ready chain {chain['total_ns']:.2f} ns through {len(chain['through'])} modules")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(tim, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
