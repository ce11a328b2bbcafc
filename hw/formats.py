"""Formats that carry over to a user's model: the fold checks its own accuracy.

The default formats (10-bit residual stream, range = the 0.9999 quantile of
|x| on the calibration images) were chosen on the board model.  Another shape
(a 64x64 input with a 4x4 stem patch, say) can need more: its integer network
may lose many points of top-1 against the float model it came from.  So after
folding, the integer network and the float model classify images of the
training split that calibration did not see (held back: images
``calib .. calib + check`` of the training split, never the test set), and
where the integer network loses more than ``max_loss`` points of top-1, the
fold tries wider formats, narrowest first::

    act 10 bit (quantile 0.9999) -> 12 -> 12 (range = max) -> 14 (max) -> 16 (max)

and keeps the first within ``max_loss``.  The loss is the point estimate on
those images; its standard error (of the paired difference: an image counts
only where the two disagree) is reported beside it.  Erring on the side of
widening costs LUTs, never accuracy: a model whose true loss is near the
limit may be widened by chance, one that loses more is not kept narrow by
chance.

When the user sets ``--act-bits`` or ``--calib-quantile`` the fold keeps them
and only warns.  When no rung of the ladder is good enough it keeps the best
and says so, with ``make qat`` (quantization-aware fine-tuning of the integer
network) as the way out.  The decision is cached per checkpoint, data and
options under build/.cache/formats, since every hw flow folds the same
checkpoint and must reach the same integer network.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import cache
from .intnet import IntNet, QuantSpec, calibration_stats

# (act_bits, calib_quantile) from the default up; lut_bits follows act_bits up to 12
LADDER = ((10, 0.9999), (12, 0.9999), (12, 1.0), (14, 1.0), (16, 1.0))
CACHE_DIR = Path("build/.cache/formats")
VERSION = 2          # bump when the fold's arithmetic changes what a cached decision means


def spec_for(act_bits: int, quantile: float) -> QuantSpec:
    return QuantSpec(act_bits=act_bits, lut_bits=min(act_bits, 12), calib_quantile=quantile)


@dataclass
class Trial:
    act_bits: int
    calib_quantile: float
    float_top1: float
    int_top1: float
    loss: float           # float_top1 - int_top1, points
    stderr: float         # standard error of that paired difference, points

    def exceeds(self, max_loss: float) -> bool:
        return self.loss > max_loss


@dataclass
class FormatChoice:
    act_bits: int
    calib_quantile: float
    images: int
    max_loss: float
    widened: bool
    within: bool          # the chosen formats lose at most max_loss points
    hand_set: bool
    trials: list = field(default_factory=list)

    def summary(self) -> str:
        last = next((t for t in self.trials if (t["act_bits"], t["calib_quantile"]) ==
                     (self.act_bits, self.calib_quantile)), None)
        if last is None:
            return "formats not checked"
        head = (f"act {self.act_bits} bit, range quantile {self.calib_quantile}: integer top-1 "
                f"{last['int_top1']:.2f}% vs float {last['float_top1']:.2f}% on {self.images} held-back training "
                f"images (loss {last['loss']:.2f} +- {last['stderr']:.2f} points)")
        if self.widened:
            first = self.trials[0]
            head += (f"; widened from act {first['act_bits']} bit, which lost {first['loss']:.2f} "
                     f"+- {first['stderr']:.2f} points")
        if not self.within:
            head += (f". More than {self.max_loss} points lost even so: fine-tune the integer network with "
                     "`make qat`" + (", or leave --act-bits / --calib-quantile unset to let the fold widen them"
                                     if self.hand_set else ""))
        return head


def predictions(net: IntNet, model, images_u8: torch.Tensor, chunk: int = 250, progress: bool = True):
    """(integer, float) class predictions of the golden model and the float model on the same images."""
    mean = torch.tensor(net.norm_mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(net.norm_std, dtype=torch.float32).view(1, -1, 1, 1)
    int_pred, float_pred = [], []
    model.eval()
    for i in tqdm(range(0, len(images_u8), chunk), desc="predictions", unit="chunk", disable=not progress):
        x = images_u8[i:i + chunk]
        int_pred.append(net.forward(x.numpy()).argmax(1))
        with torch.no_grad():
            float_pred.append(model((x.float() / 255.0 - mean) / std).argmax(1).numpy())
    return np.concatenate(int_pred), np.concatenate(float_pred)


def paired_trial(net: IntNet, model, images_u8: torch.Tensor, labels: torch.Tensor, chunk: int = 250) -> Trial:
    ip, fp = predictions(net, model, images_u8, chunk, progress=False)
    y = labels.numpy()
    fc, ic = fp == y, ip == y
    n = len(y)
    d = fc.astype(np.float64) - ic.astype(np.float64)      # +1: float right, integer wrong
    se = 100.0 * math.sqrt(max(float(d.var()), 0.0) / max(n - 1, 1))
    return Trial(net.spec.act_bits, net.spec.calib_quantile, round(100.0 * fc.mean(), 3),
                 round(100.0 * ic.mean(), 3), round(100.0 * float(d.mean()), 3), round(se, 3))


def _cache_key(ckpt, parts: dict) -> str:
    h = hashlib.sha256()
    with open(ckpt, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    h.update(json.dumps({**parts, "version": VERSION}, sort_keys=True).encode())
    return h.hexdigest()[:24]


def fold_checked(model, ckpt, train, calib: int, check: int, max_loss: float, act_bits=None, quantile=None,
                 cache_parts: dict | None = None, log=print) -> tuple:
    """Fold ``model`` on ``train.images[:calib]``; check it on the next ``check``
    images and widen the formats where needed.  Returns (IntNet, FormatChoice)."""
    hand_set = act_bits is not None or quantile is not None
    start = (act_bits or LADDER[0][0], quantile if quantile is not None else LADDER[0][1])
    calib_x = train.images[:calib]
    held_x, held_y = train.images[calib:calib + check], train.labels[calib:calib + check]
    if check <= 0 or len(held_y) == 0:
        spec = spec_for(*start)
        return IntNet.from_model(model, calib_x, train.mean, train.std, spec), None
    key = path = None
    if cache_parts is not None:
        key = _cache_key(ckpt, dict(cache_parts, calib=calib, check=check, max_loss=max_loss, start=start,
                                    hand_set=hand_set))
        path = CACHE_DIR / f"{key}.json"
        if path.exists():
            choice = FormatChoice(**json.loads(path.read_text()))
            log(f"[formats] {choice.summary()} (decided before: {path})")
            net = IntNet.from_model(model, calib_x, train.mean, train.std,
                                    spec_for(choice.act_bits, choice.calib_quantile))
            return net, choice
    rungs = [start] if hand_set else [start] + [r for r in LADDER if r[0] > start[0] or
                                                (r[0] == start[0] and r[1] > start[1])]
    model.eval()
    trials, best, stats = [], None, {}
    for bits, q in rungs:
        if q not in stats:      # the ranges depend on the quantile only: calibrate once per quantile
            stats[q] = calibration_stats(model, calib_x, train.mean, train.std, q)
        net = IntNet.from_model(model, calib_x, train.mean, train.std, spec_for(bits, q), stats=stats[q])
        t = paired_trial(net, model, held_x, held_y)
        trials.append(t)
        log(f"[formats] act {bits} bit, quantile {q}: integer {t.int_top1:.2f}% vs float {t.float_top1:.2f}% "
            f"on {len(held_y)} held-back training images (loss {t.loss:.2f} +- {t.stderr:.2f})")
        if best is None or t.loss < best[1].loss:
            best = (net, t)
        if not t.exceeds(max_loss):
            best = (net, t)
            break
    net, t = best
    choice = FormatChoice(t.act_bits, t.calib_quantile, len(held_y), max_loss, widened=len(trials) > 1,
                          within=not t.exceeds(max_loss), hand_set=hand_set,
                          trials=[asdict(x) for x in trials])
    log(f"[formats] {choice.summary()}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(path, json.dumps(asdict(choice), indent=2))
    return net, choice
