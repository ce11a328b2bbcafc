"""Package a finished run for the repository: final-epoch weights (no optimiser
state), metrics, curves and training log, teacher's log included.

    python -m model.ship --run runs/bhvit_pynq_fmnist --teacher-run runs/bhvit_pynq_fmnist_fp \
                         --dest checkpoints/bhvit_pynq_fmnist

The final epoch is shipped, not the best one: picking by test accuracy would
select on the test set.
"""
import argparse
import shutil
import sys
from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, save_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--teacher-run", default=None)
    p.add_argument("--dest", required=True)
    a = p.parse_args(argv)
    run, dest = Path(a.run), Path(a.dest)
    try:
        ck = load_checkpoint(run / "last.pt")
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    epochs = ck["args"]["epochs"]
    if ck["epoch"] + 1 < epochs:
        print(f"error: {run} finished {ck['epoch'] + 1} of {epochs} epochs; finish it with 'make train' first",
              file=sys.stderr)
        return 2
    dest.mkdir(parents=True, exist_ok=True)
    keep = {k: ck[k] for k in ("model", "config", "model_name", "epoch", "history", "data", "args")}
    save_checkpoint(keep, dest / "model.pt")
    for f in ("metrics.csv", "metrics.json", "curves.png", "train.log"):
        shutil.copyfile(run / f, dest / f)
    summary = {"student": {"model": ck["model_name"], "epochs": epochs,
                           "final_test_top1": ck["history"][-1]["test_acc"],
                           "train_seconds": round(sum(r["epoch_seconds"] for r in ck["history"]), 1)}}
    if a.teacher_run:
        t = Path(a.teacher_run)
        tk = load_checkpoint(t / "last.pt")
        shutil.copyfile(t / "train.log", dest / "teacher_train.log")
        shutil.copyfile(t / "metrics.csv", dest / "teacher_metrics.csv")
        summary["teacher"] = {"model": tk["model_name"], "epochs": tk["epoch"] + 1,
                              "final_test_top1": tk["history"][-1]["test_acc"],
                              "train_seconds": round(sum(r["epoch_seconds"] for r in tk["history"]), 1)}
    summary["total_train_seconds"] = round(sum(v["train_seconds"] for k, v in summary.items()
                                               if isinstance(v, dict)), 1)
    save_json(summary, dest / "summary.json")
    print(f"shipped {run} -> {dest}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
