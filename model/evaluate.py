"""Top-1 of a checkpoint on a test set:  python -m model.evaluate --ckpt PATH --data fmnist"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from .checkpoint import CheckpointError, model_from_checkpoint
from .data import DataError, make_loader
from .train import evaluate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", default=None, help="data set (default: the one the checkpoint was trained on)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=0, help="first N test images only")
    p.add_argument("--json", default=None, help="also write the result to this JSON file")
    args = p.parse_args(argv)
    try:
        model, ck = model_from_checkpoint(args.ckpt)
        data = args.data or ck.get("data", "fmnist")
        loader = make_loader(data, "test", 500, model.cfg.img_size, args.data_dir, channels=model.cfg.in_chans)
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t = time.time()
    correct, total, _ = evaluate(model, loader, args.limit)
    acc = 100.0 * correct / total
    res = dict(checkpoint=str(args.ckpt), model=ck.get("model_name"), data=data, images=total,
               correct=correct, top1=round(acc, 3), seconds=round(time.time() - t, 1))
    print(f"{res['model']} on {data} test ({total} images): top-1 {acc:.2f}% ({correct}/{total})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
