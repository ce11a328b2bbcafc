"""The whole shipped model as one stitched RTL top in Verilator, against the golden model.

    .venv/bin/python benchmarks/rtl_whole_model.py --images 100

Folds the shipped checkpoint as `make hls BOARD=pynq-z2` does (64 calibration images here, as
the tests fold it), builds the SystemVerilog top of all 188 nodes (hw/rtl_top.py; the
Verilator build takes minutes and is cached in build/rtlsim), streams the test images through
it free-running, and compares the logits with the golden model (np.array_equal).  Prints and
writes build/<model>/rtl_whole_model.json: equality, measured cycles per image against the cost
model's bottleneck, latency, the FIFOs whose largest occupancy reached their depth.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--board", default="pynq-z2")
    a = p.parse_args(argv)
    from flows.boards import get_board
    from flows.hls import DEFAULT_MAX_UTIL, DEFAULT_TARGET_CYCLES, fold_for_board
    from hw import rtl_top, rtlsim
    from hw.cost import graph_cost
    from hw.execute import run
    from hw.passes import lower
    from hw.intnet import IntNet, QuantSpec
    from model.checkpoint import model_from_checkpoint
    from model.data import load_split
    model, _ = model_from_checkpoint(ROOT / "checkpoints/bhvit_pynq_fmnist/model.pt")
    model.eval()
    train, test = load_split("fmnist", "train"), load_split("fmnist", "test")
    net = IntNet.from_model(model, train.images[:64], train.mean, train.std, QuantSpec(act_bits=10, lut_bits=10))
    g = lower(net.graph)
    shape = (model.cfg.img_size, model.cfg.img_size, model.cfg.in_chans)
    # folded as `make sim` folds it (tests/test_rtl_whole.py: the fixture shipped_sim_graph)
    fold_for_board(g, shape, get_board(a.board), DEFAULT_TARGET_CYCLES, DEFAULT_MAX_UTIL, rtl_top.rtl_design,
                   sized=True)
    t0 = time.time()
    top = rtl_top.rtl_top(g, shape, "bhvit_pynq_fmnist")
    rtlsim.build(top)
    t1 = time.time()
    images = test.images[:a.images].numpy().transpose(0, 2, 3, 1).astype(np.int64)
    want = run(g, images)
    res = rtlsim.simulate(top, images.reshape(-1, shape[-1]), idle=200_000)
    t2 = time.time()
    cost = graph_cost(g, shape)
    full = sorted(name for name, (_, mx, depth) in res.fifos.items() if mx >= depth)
    out = dict(images=a.images, equal=bool(np.array_equal(res.out, want)), cycles_per_image=res.cycles_per_row,
               cost_cycles_per_image=cost["cycles_per_image"], cost_bottleneck=cost["bottleneck"],
               latency_cycles=res.latency, total_cycles=res.cycles, build_s=round(t1 - t0, 1),
               simulate_s=round(t2 - t1, 1), fifos=len(res.fifos), fifos_reaching_depth=full)
    dest = ROOT / "build" / "bhvit_pynq_fmnist" / "rtl_whole_model.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "fifos_reaching_depth"}, indent=1))
    print(f"{len(full)} of {len(res.fifos)} FIFOs reached their depth; written to {dest}")
    return 0 if out["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
