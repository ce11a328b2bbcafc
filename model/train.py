"""Train a model:  python -m model.train --model NAME | --config FILE --data fmnist --epochs N

* ``--model`` a registered configuration (model/registry.py), ``--config`` your own (JSON or YAML,
  model.config.ViTConfig's fields; validated field by field), ``--fp`` its full-precision teacher;

* AdamW + per-step cosine schedule, the paper's loss (see model.losses);
* a checkpoint (last.pt) after every epoch, written atomically, plus best.pt;
* resume: the same command after an interruption continues from last.pt;
* deterministic for a seed (batches and augmentation depend on (seed, epoch));
* data parallel under torchrun (gloo on CPU, NCCL on GPUs): sharded batches,
  synchronised BN, rank 0 alone writes files;
* metrics.csv / metrics.json / curves.png / train.log in the run folder.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint, save_json, save_text
from .data import DataError, make_loader
from .layers import TokenBatchNorm
from .losses import LOSSES, compute_loss, loss_weights
from .config import ConfigError
from .registry import UnknownModelError, create_model, resolve_model


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bhvit_pynq_fmnist", help="a registered model (default bhvit_pynq_fmnist)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a model configuration of your own, JSON or YAML (instead of --model; the run is named "
                        "after the file)")
    p.add_argument("--fp", action="store_true",
                   help="train the full-precision network of the same shape (binary=False, FP downsampling): "
                        "the teacher that `make train` distils from; its run is named <model>_fp")
    p.add_argument("--data", default="fmnist", help="fmnist | cifar10 | imagefolder")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128, help="per rank")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--loss", default="paper", choices=LOSSES)
    p.add_argument("--teacher", default=None, help="checkpoint of a trained full-precision teacher")
    p.add_argument("--two-stage", type=int, default=0, metavar="E",
                   help="train the first E epochs with FP downsampling, then switch to binary downsampling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/<model>)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--compile", type=int, default=0, choices=(0, 1),
                   help="1: run the training forward/backward of student and teacher through "
                        "torch.compile (1.8x faster steps on the 2-core CPU after a 2-minute compile; "
                        "checkpoints are the same plain state dicts). Evaluation stays eager.")
    p.add_argument("--limit-steps", type=int, default=0, help="stop each epoch after this many steps (smoke runs)")
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N test images only")
    p.add_argument("--print-digest", action="store_true", help="print a weight digest per step and rank")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- distributed helpers
def dist_setup():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world


def weight_digest(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def all_reduce_grads(model, world):
    # One flat all-reduce (not DDP's bucketed hooks): simple and identical on gloo and NCCL.
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    off = 0
    for g in grads:
        g.copy_(flat[off:off + g.numel()].view_as(g))
        off += g.numel()


def broadcast_model(model):
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, 0)


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model, loader, limit: int = 0):
    model.eval()
    correct = total = 0
    loss = 0.0
    for x, y in loader:
        if limit and total >= limit:
            break
        logits = model(x)
        loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    return correct, total, loss


def gather_eval(model, loader, limit, world):
    c, n, l = evaluate(model, loader, limit)
    if world > 1:
        t = torch.tensor([c, n, l], dtype=torch.float64)
        dist.all_reduce(t)
        c, n, l = int(t[0]), int(t[1]), float(t[2])
    return 100.0 * c / max(n, 1), l / max(n, 1), n


# --------------------------------------------------------------------------- plots
def plot_curves(rows, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ep, [r["train_loss"] for r in rows], "o-", label="train loss")
    a.plot(ep, [r["test_loss"] for r in rows], "s-", label="test CE")
    a.set_xlabel("epoch"); a.set_ylabel("loss"); a.legend(); a.grid(alpha=.3)
    b.plot(ep, [r["train_acc"] for r in rows], "o-", label="train top-1 (running)")
    b.plot(ep, [r["test_acc"] for r in rows], "s-", label="test top-1")
    b.set_xlabel("epoch"); b.set_ylabel("%"); b.legend(); b.grid(alpha=.3)
    fig.suptitle(path.parent.name)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    from .checkpoint import atomic_write_bytes
    atomic_write_bytes(path, lambda fh: fh.write(buf.getvalue()))


def write_metrics(rows, out: Path, summary: dict):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
    save_text(buf.getvalue(), out / "metrics.csv")
    save_json({"summary": summary, "epochs": rows}, out / "metrics.json")
    plot_curves(rows, out / "curves.png")


# --------------------------------------------------------------------------- main loop
def build(cfg, stage_binary_downsample, args):
    if args.two_stage and not stage_binary_downsample:
        cfg = cfg.replace(downsample="fp")
    return create_model(cfg)


class Trainer:
    """One training run: the student (and its optimiser), the teacher, the loaders, the run
    folder; ``run()`` trains from the first epoch not done yet to ``args.epochs``."""

    def __init__(self, args):
        self.args = args
        self.rank, self.world = dist_setup()
        self.is_main = self.rank == 0
        # raises UnknownModelError with the list of models, ConfigError naming the field
        self.name, self.cfg = resolve_model(args.model, args.config, args.fp)
        self.out = Path(args.out or f"runs/{self.name}")
        self.log_lines: list = []
        cfg = self.cfg
        torch.manual_seed(args.seed)
        self.train_loader = make_loader(args.data, "train", args.batch_size, cfg.img_size, args.data_dir, args.seed,
                                        self.rank, self.world, channels=cfg.in_chans)
        self.test_loader = make_loader(args.data, "test", 500, cfg.img_size, args.data_dir, args.seed, self.rank,
                                       self.world, channels=cfg.in_chans)
        self.teacher = self.load_teacher()
        # Compiled wrappers share their parameters with the modules; checkpoints, evaluation and
        # the regularisation loss use the modules themselves, so nothing downstream sees a wrapper.
        self.wrap = torch.compile if args.compile else (lambda m: m)
        self.teacher_fwd = self.wrap(self.teacher) if self.teacher is not None else None
        n = len(self.train_loader)
        self.steps_per_epoch = min(n, args.limit_steps) if args.limit_steps else n
        self.total_steps = self.steps_per_epoch * args.epochs
        self.start_epoch, self.rows, self.best = 0, [], -1.0
        self.binary_stage = not args.two_stage
        self.model, self.opt = self.fresh(self.binary_stage)
        self.resume()
        if self.world > 1:
            broadcast_model(self.model)
        self.model_fwd = self.wrap(self.model)

    def log(self, msg):
        if self.is_main:
            print(msg, flush=True)
            self.log_lines.append(msg)

    def load_teacher(self):
        if not self.args.teacher:
            return None
        teacher, _ = model_from_checkpoint(self.args.teacher)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def fresh(self, stage_binary: bool):
        """A new student (the same initial weights for a seed) and its optimiser."""
        torch.manual_seed(self.args.seed)
        m = build(self.cfg, stage_binary, self.args)
        for mod in m.modules():
            if isinstance(mod, TokenBatchNorm):
                mod.sync = self.world > 1
        return m, torch.optim.AdamW(m.parameters(), lr=self.args.lr, weight_decay=self.args.weight_decay)

    def resume(self):
        """Continue from the run folder's last.pt, if there is one (a corrupted one raises
        CheckpointError and is never overwritten)."""
        last = self.out / "last.pt"
        if not last.exists():
            return
        ck = load_checkpoint(last)
        if ck.get("model_name") != self.name:
            raise CheckpointError(f"{last} belongs to model '{ck.get('model_name')}', not '{self.name}'. "
                                  "Use another OUT= or remove the old run.")
        self.binary_stage = ck.get("binary_stage", True)
        self.model, self.opt = self.fresh(self.binary_stage)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.start_epoch, self.rows, self.best = ck["epoch"] + 1, ck["history"], ck.get("best", -1.0)
        self.log(f"[train] resuming {self.name} from {last} at epoch {self.start_epoch + 1}/{self.args.epochs}")

    def switch_to_binary_downsampling(self, epoch):
        """Stage 2 of the two-stage schedule: carry over every tensor whose name and shape match."""
        old = self.model.state_dict()
        self.model, self.opt = self.fresh(True)
        own = self.model.state_dict()
        own.update({k: v for k, v in old.items() if k in own and own[k].shape == v.shape})
        self.model.load_state_dict(own)
        self.binary_stage = True
        self.log(f"[train] epoch {epoch + 1}: switching to binary downsampling (two-stage schedule)")
        self.model_fwd = self.wrap(self.model)

    def lr_at(self, step):
        a = self.args
        return a.min_lr + 0.5 * (a.lr - a.min_lr) * (1 + math.cos(math.pi * step / max(self.total_steps, 1)))

    def train_epoch(self, epoch) -> dict:
        """One epoch of steps: {seen, correct, loss_sum, seconds, weights}."""
        args, model, opt = self.args, self.model, self.opt
        self.train_loader.set_epoch(epoch)
        weights = loss_weights(args.loss, epoch, args.epochs, self.teacher is not None)
        model.train()
        t0 = time.time()
        seen = correct = 0
        loss_sum = 0.0
        it = iter(self.train_loader)
        bar = None
        if self.is_main and not args.no_progress:
            from tqdm import tqdm
            bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False,
                       dynamic_ncols=True, file=sys.stderr)
        for step in range(self.steps_per_epoch):
            global_step = epoch * self.steps_per_epoch + step
            x, y = next(it)
            for g in opt.param_groups:
                g["lr"] = self.lr_at(global_step)
            with torch.no_grad():
                t_logits = self.teacher_fwd(x) if self.teacher_fwd is not None else None
            logits = self.model_fwd(x)
            loss, _ = compute_loss(model, logits, y, t_logits, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.world > 1:
                all_reduce_grads(model, self.world)
            opt.step()
            seen += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            loss_sum += loss.item() * len(y)
            if args.print_digest:
                # One write() per line: both ranks share the pipe, and print() may split a
                # line into several writes that interleave with the other rank's output.
                os.write(1, f"DIGEST rank={self.rank} step={global_step} {weight_digest(model)}\n".encode())
            crash = int(os.environ.get("BHVIT_CRASH_AFTER_STEPS", "0"))
            if crash and global_step + 1 >= crash:
                os._exit(75)  # test hook: die like a killed process, no clean-up
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{100 * correct / seen:.1f}")
        if bar is not None:
            bar.close()
        return dict(seen=seen, correct=correct, loss_sum=loss_sum, seconds=time.time() - t0, weights=weights)

    def end_epoch(self, epoch, st: dict, t0: float):
        """Evaluate, log, and (rank 0) write last.pt, best.pt, the metrics and the log; the epoch's
        time (``t0``: its start) includes the evaluation."""
        test_acc, test_loss, n_test = gather_eval(self.model, self.test_loader, self.args.eval_limit, self.world)
        epoch_seconds = time.time() - t0
        seen, w = st["seen"], st["weights"]
        row = dict(epoch=epoch + 1, lr=round(self.lr_at((epoch + 1) * self.steps_per_epoch), 8),
                   train_loss=round(st["loss_sum"] / max(seen, 1), 5),
                   train_acc=round(100 * st["correct"] / max(seen, 1), 3),
                   test_loss=round(test_loss, 5), test_acc=round(test_acc, 3), test_images=n_test,
                   w_ce=w[0], w_kd=w[1], w_re=w[2],
                   epoch_seconds=round(epoch_seconds, 1), images_per_s=round(seen * self.world / st["seconds"], 1))
        self.rows.append(row)
        self.log(f"[train] epoch {epoch + 1}/{self.args.epochs}: train loss {row['train_loss']:.4f} "
                 f"acc {row['train_acc']:.2f}% | test top-1 {test_acc:.2f}% ({n_test} images) | "
                 f"{row['epoch_seconds']:.0f} s, {row['images_per_s']:.0f} img/s")
        if self.is_main:
            self.save(epoch, test_acc)

    def save(self, epoch, test_acc):
        args = self.args
        ck = dict(model=self.model.state_dict(), optimizer=self.opt.state_dict(), epoch=epoch, history=self.rows,
                  best=max(self.best, test_acc), config=self.model.cfg.to_dict(), model_name=self.name,
                  binary_stage=self.binary_stage, args=vars(args), data=args.data)
        if test_acc > self.best and self.binary_stage:
            self.best = test_acc
            save_checkpoint({k: ck[k] for k in ("model", "config", "model_name", "epoch", "history", "data")},
                            self.out / "best.pt")
        save_checkpoint(ck, self.out / "last.pt")
        summary = dict(model=self.name, data=args.data, epochs_done=epoch + 1, epochs=args.epochs,
                       final_test_acc=test_acc, best_test_acc=self.best, world_size=self.world,
                       train_seconds_total=round(sum(r["epoch_seconds"] for r in self.rows), 1))
        write_metrics(self.rows, self.out, summary)
        with open(self.out / "train.log", "a") as fh:
            fh.write("\n".join(self.log_lines) + "\n")
        self.log_lines.clear()

    def run(self):
        args = self.args
        self.log(f"[train] {self.name}: {sum(p.numel() for p in self.model.parameters()):,} parameters, "
                 f"{args.epochs} epochs x {self.steps_per_epoch} steps, batch {args.batch_size} x {self.world} "
                 f"rank(s), loss={args.loss}, teacher={'yes' if self.teacher else 'no'}")
        t_run = time.time()
        for epoch in range(self.start_epoch, args.epochs):
            if args.two_stage and not self.binary_stage and epoch >= args.two_stage:
                self.switch_to_binary_downsampling(epoch)
            t0 = time.time()
            st = self.train_epoch(epoch)
            self.end_epoch(epoch, st, t0)
        self.log(f"[train] done in {time.time() - t_run:.0f} s this session; run folder {self.out}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    Trainer(args).run()
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return 0


def cli(argv=None) -> int:
    try:
        return main(argv)
    except (UnknownModelError, ConfigError, DataError, CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
