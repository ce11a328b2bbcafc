"""Configurations other than the shipped one, from a file to bit-exact hardware.

    .venv/bin/python benchmarks/model_configs.py --run      # train briefly, then golden, hls, sim
    .venv/bin/python benchmarks/model_configs.py            # collect the table from the reports

For each example configuration in docs/configs/ (each differs from bhvit_pynq_fmnist in one of
the ways docs/configs.md lists) and for BinaryViT at board size, ``--run`` trains it briefly on the CPU (no teacher, 3 epochs of
150 steps of 128 images, the same recipe for all) and runs ``make golden``, ``make hls`` and
``make sim SIM_ARGS="--no-timing"`` on the checkpoint, each as a user would type it. The table, written to
build/model_configs.md and printed, takes every figure from the flows' own reports:
float / integer top-1 on the test set and the formats the fold chose (golden), C simulation
against golden (hls), RTL simulation against golden, cycles per image against the cost model,
and Yosys' resources of the whole top (sim).

The 3-channel configuration trains on a colourised Fashion-MNIST image folder
(``python -m model.data to-imagefolder --colour``, written when absent): no 3-channel data set
ships here.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RGB_FOLDER = "data/fmnist-rgb"
# (config file, make variables for its data)
CASES = [
    ("docs/configs/bhvit_two_blocks_four_windows.json", {}),
    ("docs/configs/bhvit_heads_2_4_mlp2.json", {}),
    ("docs/configs/bhvit_64px_patch4.yaml", {}),
    ("docs/configs/bhvit_all_msgdc_rgb.json", {"DATA": "imagefolder", "DATA_DIR": RGB_FOLDER}),
    ("binaryvit_pynq_fmnist", {}),          # a registered model: MODEL=, its run's checkpoint for the flows
]
BRIEF = {"TEACHER": "none", "EPOCHS": "3", "BATCH": "128", "COMPILE": "0",
         "TRAIN_ARGS": "--limit-steps 150 --no-progress"}
BOARD = "pynq-z2"


def make(target: str, config: str, variables: dict, log: Path) -> tuple:
    if config.endswith((".json", ".yaml", ".yml")):
        which = [f"CONFIG={config}"]
    else:                                   # a registered model: train it, then the flows take its run
        which = [f"MODEL={config}"] + ([] if target == "train" else [f"CKPT=runs/{config}/last.pt"])
    cmd = ["make", target, *which, *[f"{k}={v}" for k, v in variables.items()]]
    t = time.time()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT).returncode
    return rc, time.time() - t


def run_case(config: str, data: dict) -> None:
    stem = Path(config).stem
    logs = ROOT / "build" / stem / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if data.get("DATA_DIR") == RGB_FOLDER and not (ROOT / RGB_FOLDER / "val").exists():
        subprocess.run([sys.executable, "-m", "model.data", "to-imagefolder", "--colour", "--out", RGB_FOLDER],
                       cwd=ROOT, check=True)
    # the timing estimate (issue of its own, docs/timing.md) is left out: per module it is the slowest step
    steps = [("train", {**BRIEF, **data}), ("golden", {}), ("hls", {}), ("sim", {"SIM_ARGS": "--no-timing"})]
    for target, variables in steps:
        rc, s = make(target, config, variables, logs / f"{target}.log")
        print(f"[model_configs] {stem}: make {target} exit {rc} in {s:.0f} s (log {logs / (target + '.log')})",
              flush=True)
        if rc != 0:
            return


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def row(config: str) -> dict:
    stem = Path(config).stem
    b = ROOT / "build" / stem
    g, h, s = _load(b / "golden" / "report.json"), _load(b / f"hls_{BOARD}" / "report.json"), \
        _load(b / f"sim_{BOARD}" / "report.json")
    r = {"config": stem}
    if g:
        f = g.get("formats") or {}
        r.update(float_top1=g["float_top1"], int_top1=g["int_top1"], test_images=g["images"],
                 act_bits=g["spec"]["act_bits"], quantile=g["spec"]["calib_quantile"], widened=f.get("widened"))
    if h:
        r.update(csim_images=h["csim"]["images"], csim_equal=h["csim"]["equal"])
    if s:
        tot = s["synth"]["totals"]["total"] if s.get("synth") else {}
        r.update(rtl_images=s["images"], rtl_equal=s["equal"], cycles=s["measured"]["cycles_per_image"],
                 cost_dev=s["cost_deviation_pct"], lut=tot.get("device_LUT"), ff=tot.get("FF"),
                 bram=tot.get("BRAM"), dsp=tot.get("DSP"))
    return r


def table(rows) -> str:
    def v(r, k, fmt="{}"):
        return fmt.format(r[k]) if r.get(k) is not None else "-"
    out = ["| config | float / integer top-1 (test) | formats | C sim = golden | RTL = golden | cycles/image "
           "(vs cost model) | Yosys LUT / FF / BRAM36 / DSP |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        fmt = "-" if "act_bits" not in r else f"{r['act_bits']} bit, q {r['quantile']}" + \
            (" (widened)" if r.get("widened") else "")
        out.append(f"| {r['config']} | {v(r, 'float_top1', '{:.2f}')} / {v(r, 'int_top1', '{:.2f}')} % | {fmt} | "
                   f"{v(r, 'csim_equal')} ({v(r, 'csim_images')} images) | {v(r, 'rtl_equal')} "
                   f"({v(r, 'rtl_images')} images) | {v(r, 'cycles', '{:,.1f}')} ({v(r, 'cost_dev', '{:+.1f}')} %) | "
                   f"{v(r, 'lut', '{:,}')} / {v(r, 'ff', '{:,}')} / {v(r, 'bram')} / {v(r, 'dsp')} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="store_true", help="train and run the flows first (about an hour on 2 cores)")
    p.add_argument("--only", nargs="*", default=None, help="config file stems to take (default: all)")
    a = p.parse_args(argv)
    cases = [c for c in CASES if a.only is None or Path(c[0]).stem in a.only]
    if a.run:
        for config, data in cases:
            run_case(config, data)
    md = table([row(c) for c, _ in cases])
    out = ROOT / "build" / "model_configs.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md + "\n")
    print(md)
    print(f"[model_configs] wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
