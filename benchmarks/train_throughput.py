"""Training throughput (forward + backward + AdamW step) of a registered model or a configuration file.

    .venv/bin/python benchmarks/train_throughput.py --model bhvit_pynq_fmnist --batch-size 256
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from model import create_model, get_config  # noqa: E402
from model.registry import resolve_model  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bhvit_pynq_fmnist")
    p.add_argument("--config", default=None, metavar="FILE", help="a JSON / YAML model configuration instead of --model")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="time the torch.compile'd model (compile time excluded)")
    p.add_argument("--teacher", default=None, help="also run this registered float model forward (as in KD training)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    _, cfg = resolve_model(a.model, a.config)
    torch.manual_seed(0)
    model = create_model(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    teacher = create_model(get_config(a.teacher)).eval() if a.teacher else None
    fwd, t_fwd = model, teacher
    if a.compile:
        fwd = torch.compile(model)
        t_fwd = torch.compile(teacher) if teacher is not None else None
    x = torch.randn(a.batch_size, cfg.in_chans, cfg.img_size, cfg.img_size)
    y = torch.randint(0, cfg.num_classes, (a.batch_size,))
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            t0 = time.perf_counter()
        if t_fwd is not None:
            with torch.no_grad():
                t_fwd(x)
        loss = torch.nn.functional.cross_entropy(fwd(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    ips = a.batch_size * a.steps / dt
    what = "forward+backward+AdamW" + (f" + {a.teacher} forward" if teacher is not None else "")
    print(f"{a.model}{' (compiled)' if a.compile else ''}: batch {a.batch_size}, {torch.get_num_threads()} "
          f"threads, {a.steps} steps: {ips:.1f} images/s ({1000 * dt / a.steps:.0f} ms/step, {what})")


if __name__ == "__main__":
    main()
