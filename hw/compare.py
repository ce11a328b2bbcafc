"""Layer-by-layer comparison of the integer network with its float model.

For every integer kernel output of :class:`hw.intnet.IntNet` this finds the
float tensor the same point holds in the trained PyTorch model, dequantises
the integers with the kernel's format and reports the signal-to-quantisation-
noise ratio (SQNR) and the share of saturated values.  Errors accumulate along
the network, so the first layer whose SQNR drops sharply is the one to look at.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .fixedpoint import to_float


@torch.no_grad()
def float_activations(model, images: torch.Tensor) -> dict:
    """Module outputs (':out'), inputs (':in') and RPReLU inputs less their
    shift (':z') of a float model, as channel-last float64 arrays."""
    from model.layers import RPReLU
    acts: dict = {}

    def tokens(t):
        t = t.detach().double()
        if t.dim() == 4:                     # (B, C, H, W) map -> (B, N, C) tokens
            t = t.flatten(2).transpose(1, 2)
        return t.numpy()

    def hook(name):
        def fn(mod, inp, out):
            if isinstance(out, torch.Tensor):
                acts[name + ":out"] = tokens(out)
            if inp and isinstance(inp[0], torch.Tensor):
                acts[name + ":in"] = tokens(inp[0])
            if isinstance(mod, RPReLU):
                acts[name + ":z"] = tokens(inp[0] - mod.move1)
            if name == "stem.norm":
                acts["stem.gelu:out"] = tokens(F.gelu(out))
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    model.eval()
    try:
        model(images)
    finally:
        for h in handles:
            h.remove()
    return acts


def float_key(name: str, modules) -> str | None:
    """The float activation that integer kernel ``name`` approximates."""
    if name == "stem.affine":
        return "stem.norm:out"
    if name == "stem.pos":
        return "stem:out"
    if name.endswith(".y"):
        return name[:-2] + ".norm2:in"
    if name.endswith(".out") and name[:-4] in modules:
        return name[:-4] + ":out"
    if name.endswith(".blend"):
        return name[:-6] + ":out"
    if name.endswith(".context"):
        return name[:-8] + ".context_act:z"
    if name.endswith(".pre"):
        base = name[:-4]
        if base.endswith(tuple(f".convs.{j}" for j in range(8))):
            head, j = base.rsplit(".convs.", 1)
            return f"{head}.acts.{j}:z"
        return base + ".act:z"
    if name.startswith("downsamples.") and name.endswith(".act"):
        return name[:-4] + ":out"
    if name in modules:
        return name + ":out"
    return None


def layer_report(model, net, images_u8: torch.Tensor) -> list[dict]:
    """One row per integer kernel output, in execution order."""
    mean = torch.tensor(net.norm_mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(net.norm_std, dtype=torch.float32).view(1, -1, 1, 1)
    acts = float_activations(model, (images_u8.float() / 255.0 - mean) / std)
    net.trace = {}
    try:
        net.forward(images_u8.numpy())
        trace = net.trace
    finally:
        net.trace = None
    modules = dict(model.named_modules())
    rows = []
    for name, y in trace.items():
        key = float_key(name, modules)
        if key is None or key not in acts or name not in net.fmt:
            continue
        fmt = net.fmt[name]
        ref = acts[key]
        got = to_float(y, fmt)
        if ref.size != got.size:
            continue
        got = got.reshape(ref.shape)
        noise = float(((got - ref) ** 2).sum())
        sig = float((ref ** 2).sum())
        sqnr = math.inf if noise == 0 else 10 * math.log10(max(sig, 1e-30) / noise)
        sat = float(np.mean((y == fmt.lo) | (y == fmt.hi)))
        rows.append(dict(name=name, float=key, fmt=str(fmt), sqnr_db=round(sqnr, 2),
                         saturated=round(sat, 5), max_abs=float(np.abs(ref).max())))
    return rows


def format_report(rows) -> str:
    out = [f"{'kernel':48s} {'format':>9s} {'SQNR dB':>8s} {'sat %':>7s} {'max|x|':>8s}"]
    for r in rows:
        out.append(f"{r['name']:48s} {r['fmt']:>9s} {r['sqnr_db']:8.2f} {100 * r['saturated']:7.3f} "
                   f"{r['max_abs']:8.3f}")
    return "\n".join(out)
