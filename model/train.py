"""Train a registered model:  python -m model.train --model NAME --data fmnist --epochs N

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
from .registry import UnknownModelError, create_model, get_config


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bhvit_pynq_fmnist")
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
def build(cfg_name, stage_binary_downsample, args):
    cfg = get_config(cfg_name)
    if args.two_stage and not stage_binary_downsample:
        cfg = cfg.replace(downsample="fp")
    return create_model(cfg)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world = dist_setup()
    is_main = rank == 0
    out = Path(args.out or f"runs/{args.model}")
    log_lines = []

    def log(msg):
        if is_main:
            print(msg, flush=True)
            log_lines.append(msg)

    cfg = get_config(args.model)  # raises UnknownModelError with the list of models
    torch.manual_seed(args.seed)
    train_loader = make_loader(args.data, "train", args.batch_size, cfg.img_size, args.data_dir, args.seed,
                               rank, world)
    test_loader = make_loader(args.data, "test", 500, cfg.img_size, args.data_dir, args.seed, rank, world)

    teacher = None
    if args.teacher:
        teacher, _ = model_from_checkpoint(args.teacher)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    # Compiled wrappers share their parameters with the modules; checkpoints, evaluation and
    # the regularisation loss use the modules themselves, so nothing downstream sees a wrapper.
    wrap = torch.compile if args.compile else (lambda m: m)
    teacher_fwd = wrap(teacher) if teacher is not None else None

    steps_per_epoch = min(len(train_loader), args.limit_steps) if args.limit_steps else len(train_loader)
    total_steps = steps_per_epoch * args.epochs

    def fresh(stage_binary: bool):
        torch.manual_seed(args.seed)
        m = build(args.model, stage_binary, args)
        for mod in m.modules():
            if isinstance(mod, TokenBatchNorm):
                mod.sync = world > 1
        o = torch.optim.AdamW(m.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        return m, o

    start_epoch, rows, best = 0, [], -1.0
    last = out / "last.pt"
    two_stage_switched = not args.two_stage
    model, opt = fresh(two_stage_switched)
    if last.exists():
        ck = load_checkpoint(last)  # CheckpointError on corruption: the file is never overwritten
        if ck.get("model_name") != args.model:
            raise CheckpointError(f"{last} belongs to model '{ck.get('model_name')}', not '{args.model}'. "
                                  "Use another OUT= or remove the old run.")
        two_stage_switched = ck.get("binary_stage", True)
        model, opt = fresh(two_stage_switched)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start_epoch, rows, best = ck["epoch"] + 1, ck["history"], ck.get("best", -1.0)
        log(f"[train] resuming {args.model} from {last} at epoch {start_epoch + 1}/{args.epochs}")
    if world > 1:
        broadcast_model(model)

    def lr_at(step):
        return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * step / max(total_steps, 1)))

    log(f"[train] {args.model}: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{args.epochs} epochs x {steps_per_epoch} steps, batch {args.batch_size} x {world} rank(s), "
        f"loss={args.loss}, teacher={'yes' if teacher else 'no'}")
    t_run = time.time()
    model_fwd = wrap(model)
    for epoch in range(start_epoch, args.epochs):
        if args.two_stage and not two_stage_switched and epoch >= args.two_stage:
            # Stage 2: binary downsampling; carry over every tensor whose name and shape match.
            old = model.state_dict()
            model, opt = fresh(True)
            own = model.state_dict()
            own.update({k: v for k, v in old.items() if k in own and own[k].shape == v.shape})
            model.load_state_dict(own)
            two_stage_switched = True
            log(f"[train] epoch {epoch + 1}: switching to binary downsampling (two-stage schedule)")
            model_fwd = wrap(model)
        train_loader.set_epoch(epoch)
        weights = loss_weights(args.loss, epoch, args.epochs, teacher is not None)
        model.train()
        t0 = time.time()
        seen = correct = 0
        loss_sum = 0.0
        it = iter(train_loader)
        bar = None
        if is_main and not args.no_progress:
            from tqdm import tqdm
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False,
                       dynamic_ncols=True, file=sys.stderr)
        for step in range(steps_per_epoch):
            x, y = next(it)
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch * steps_per_epoch + step)
            with torch.no_grad():
                t_logits = teacher_fwd(x) if teacher_fwd is not None else None
            logits = model_fwd(x)
            loss, terms = compute_loss(model, logits, y, t_logits, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:
                all_reduce_grads(model, world)
            opt.step()
            seen += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            loss_sum += loss.item() * len(y)
            if args.print_digest:
                # One write() per line: both ranks share the pipe, and print() may split a
                # line into several writes that interleave with the other rank's output.
                os.write(1, f"DIGEST rank={rank} step={epoch * steps_per_epoch + step} "
                            f"{weight_digest(model)}\n".encode())
            crash = int(os.environ.get("BHVIT_CRASH_AFTER_STEPS", "0"))
            if crash and epoch * steps_per_epoch + step + 1 >= crash:
                os._exit(75)  # test hook: die like a killed process, no clean-up
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{100 * correct / seen:.1f}")
        if bar is not None:
            bar.close()
        train_time = time.time() - t0
        test_acc, test_loss, n_test = gather_eval(model, test_loader, args.eval_limit, world)
        row = dict(epoch=epoch + 1, lr=round(lr_at((epoch + 1) * steps_per_epoch), 8),
                   train_loss=round(loss_sum / max(seen, 1), 5), train_acc=round(100 * correct / max(seen, 1), 3),
                   test_loss=round(test_loss, 5), test_acc=round(test_acc, 3), test_images=n_test,
                   w_ce=weights[0], w_kd=weights[1], w_re=weights[2],
                   epoch_seconds=round(time.time() - t0, 1), images_per_s=round(seen * world / train_time, 1))
        rows.append(row)
        log(f"[train] epoch {epoch + 1}/{args.epochs}: train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.2f}% | test top-1 {test_acc:.2f}% ({n_test} images) | "
            f"{row['epoch_seconds']:.0f} s, {row['images_per_s']:.0f} img/s")
        if is_main:
            ck = dict(model=model.state_dict(), optimizer=opt.state_dict(), epoch=epoch, history=rows,
                      best=max(best, test_acc), config=model.cfg.to_dict(), model_name=args.model,
                      binary_stage=two_stage_switched, args=vars(args), data=args.data)
            if test_acc > best and two_stage_switched:
                best = test_acc
                save_checkpoint({k: ck[k] for k in ("model", "config", "model_name", "epoch", "history", "data")},
                                out / "best.pt")
            save_checkpoint(ck, last)
            summary = dict(model=args.model, data=args.data, epochs_done=epoch + 1, epochs=args.epochs,
                           final_test_acc=test_acc, best_test_acc=best, world_size=world,
                           train_seconds_total=round(sum(r["epoch_seconds"] for r in rows), 1))
            write_metrics(rows, out, summary)
            with open(out / "train.log", "a") as fh:
                fh.write("\n".join(log_lines) + "\n")
            log_lines.clear()
    log(f"[train] done in {time.time() - t_run:.0f} s this session; run folder {out}")
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return 0


def cli(argv=None) -> int:
    try:
        return main(argv)
    except (UnknownModelError, DataError, CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
