"""Fold a trained checkpoint into the integer network and measure it.

    python -m hw.golden --ckpt checkpoints/bhvit_pynq_fmnist/model.pt --act-bits 10

Writes, under ``--out`` (default build/<model>/golden):

* ``intnet.npz``   the integer parameters and formats (the golden model's input);
* ``report.json``  float vs integer top-1 on the test set, their agreement and
                   the per-kernel SQNR table;
* ``report.md``    the same for people, and ``layers.png`` the SQNR per kernel.

The integer top-1 is computed by the golden executor alone (numpy int64, no
float on the datapath), so it is the accuracy the hardware will have.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .compare import format_report, layer_report
from .formats import predictions
from .intnet import IntNet


def evaluate_int(net: IntNet, model, images_u8: torch.Tensor, labels: torch.Tensor, chunk: int = 250,
                 progress: bool = True):
    """Top-1 of the golden model and of the float model on the same images."""
    y = labels.numpy()
    ip, fp = predictions(net, model, images_u8, chunk, progress)
    return dict(images=int(len(y)), float_top1=round(100.0 * float((fp == y).mean()), 3),
                int_top1=round(100.0 * float((ip == y).mean()), 3),
                agreement=round(100.0 * float((ip == fp).mean()), 3))


def plot_layers(rows, path: Path, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.14), 4))
    ax.plot([r["sqnr_db"] for r in rows], marker=".")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["name"] for r in rows], rotation=90, fontsize=5)
    ax.set_ylabel("SQNR vs float (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def main(argv=None) -> int:
    from model.checkpoint import atomic_write_bytes

    from .cli import HwInputError, add_common_args, load_inputs

    p = argparse.ArgumentParser(prog="python -m hw.golden", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, intnet=False)
    a = p.parse_args(argv)
    t0 = time.time()
    try:
        inp = load_inputs(a, "golden")
    except HwInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model, net, test, out, name, data = inp.model, inp.net, inp.test, inp.out, inp.name, inp.data
    spec = net.spec
    net.save(out / "intnet.npz")
    fold_s = time.time() - t0
    n = a.limit or len(test.images)
    t0 = time.time()
    res = evaluate_int(net, model, test.images[:n], test.labels[:n])
    rows = layer_report(model, net, test.images[:32])
    res.update(model=name, checkpoint=str(a.ckpt), data=data, spec=spec.__dict__, calib_images=a.calib,
               fold_seconds=round(fold_s, 1), eval_seconds=round(time.time() - t0, 1),
               formats=None if inp.formats is None else asdict(inp.formats),
               layers=rows, command="python -m hw.golden " + " ".join(argv if argv is not None else sys.argv[1:]))
    atomic_write_bytes(out / "report.json", lambda fh: fh.write(json.dumps(res, indent=2).encode()))
    md = [f"# Golden integer model of {name}", "",
          f"Command: `{res['command']}`", "",
          "| images | float top-1 | integer top-1 | agreement |", "|---|---|---|---|",
          f"| {res['images']} | {res['float_top1']:.2f}% | {res['int_top1']:.2f}% | {res['agreement']:.2f}% |", "",
          *([f"Format check: {inp.formats.summary()}.", ""] if inp.formats is not None else []),
          f"Formats: act {spec.act_bits} bit, pre-activation {spec.pre_bits} bit, multipliers "
          f"{spec.mult_bits} bit, accumulators <= {spec.acc_bits} bit. Per-kernel SQNR on 32 test "
          f"images (errors accumulate along the network):", "", "```", format_report(rows), "```", ""]
    atomic_write_bytes(out / "report.md", lambda fh: fh.write("\n".join(md).encode()))
    plot_layers(rows, out / "layers.png", f"{name}: integer vs float, act {spec.act_bits} bit")
    print(f"{name} on {data} test ({res['images']} images): float top-1 {res['float_top1']:.2f}%, "
          f"integer (golden) top-1 {res['int_top1']:.2f}%, agreement {res['agreement']:.2f}%")
    print(f"[golden] wrote {out}/intnet.npz, report.json, report.md, layers.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
