"""`make sim` of a folding the analytical estimate refuses, to measure it (issue: twice the images
per LUT).  The estimate runs above Yosys where its per-op fits are off for a folding; this runs
flows.sim with the fit check's LUT limit at ``--lut-limit`` (a fraction of the device) and the
other limits at ``--max-util``, and Yosys' counts in the report are the figures to read.  (At
65d77c8 the 5,000-cycle folding needed it: the estimate then counted the FIFOs at the delay
model's depths, 48,630 LUTs against 41,704 by Yosys after sizing; `make sim` now checks the fit
with the FIFOs it expects to keep and takes that folding by default.)

    .venv/bin/python benchmarks/sim_past_estimate.py --lut-limit 1.35 -- \\
        --ckpt checkpoints/bhvit_pynq_fmnist/model.pt --act-bits 10 --target-cycles 4000 --max-util 0.9 \\
        --jobs 2 --out build/bhvit_pynq_fmnist/sim_pynq-z2_4000
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], usage="%(prog)s --lut-limit F -- <flows.sim options>")
    p.add_argument("--lut-limit", type=float, required=True, help="fraction of the device's LUTs the estimate may use")
    p.add_argument("sim_args", nargs=argparse.REMAINDER, help="options for python -m flows.sim (after --)")
    a = p.parse_args(argv)
    import flows.common as common
    import flows.sim

    def fits(est, max_util):
        u = est["utilisation"]
        return u["luts"] <= a.lut_limit and u["bram36"] <= max_util and u["dsps"] <= max_util
    common.fits = fits                  # prepare() and fold_for_board read it from the module
    args = [x for x in a.sim_args if x != "--"]
    return flows.sim.main(args)


if __name__ == "__main__":
    sys.exit(main())
