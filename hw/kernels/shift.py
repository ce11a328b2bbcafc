"""The shift unit: box sums along H or W (circular as BHViT's torch.roll, or zero-padded as
BinaryViT's average pools) and channel-mix rolls.

Pure data movement plus adds on a (B, C, H, W) map; the division by 3 or 5
of the box filters is folded into the LayerScale multiplier that follows, so
the kernel output is the exact integer sum."""
from __future__ import annotations

import numpy as np


def shifted(x, s: int, axis: int, pad: str = "circular"):
    """x moved by s along axis: np.roll (pad "circular", BHViT's torch.roll) or with zeros
    coming in (pad "zero", BinaryViT's zero-padded average pools)."""
    y = np.roll(x, s, axis=axis)
    if pad == "zero" and s:
        idx = [slice(None)] * y.ndim
        idx[axis] = slice(0, s) if s > 0 else slice(s, None)
        y[tuple(idx)] = 0
    return y


def box_sum(x, reach: int, axis: int, pad: str = "circular"):
    """sum_{s=-reach..reach} x shifted by s along axis (circular as torch.roll, or zero-padded)."""
    x = np.asarray(x, dtype=np.int64)
    acc = x.copy()
    for s in range(1, reach + 1):
        acc += shifted(x, s, axis, pad) + shifted(x, -s, axis, pad)
    return acc


def channel_mix(x, s: int):
    """Channels split in 4 chunks rolled +s along H, -s along H, +s along W, -s along W."""
    x = np.asarray(x)
    c = x.shape[1]
    if c % 4:
        raise ValueError(f"channel_mix needs channels divisible by 4, got {c}")
    q = c // 4
    return np.concatenate([np.roll(x[:, :q], s, 2), np.roll(x[:, q:2 * q], -s, 2),
                           np.roll(x[:, 2 * q:3 * q], s, 3), np.roll(x[:, 3 * q:], -s, 3)], axis=1)


# The taps of the fused shift unit, (dh, dw): output (h, w) reads x[(h + dh) mod H, (w + dw) mod W].
# Every shift branch reads a subset of this cross: the box sums along H / W with reach 1 or 2,
# and each channel quarter of a channel mix one tap at distance 1 or 2.
CROSS_TAPS = ((0, 0), (-1, 0), (1, 0), (-2, 0), (2, 0), (0, -1), (0, 1), (0, -2), (0, 2))


def cross_conv(x, coef, pad: str = "circular"):
    """Depthwise convolution over CROSS_TAPS, circular or zero-padded: y[c] = sum_t coef[c, t] *
    x[c] shifted by tap t (exact int64).  x (B, C, H, W), coef (C, len(CROSS_TAPS))."""
    x = np.asarray(x, dtype=np.int64)
    coef = np.asarray(coef, dtype=np.int64)
    if coef.shape != (x.shape[1], len(CROSS_TAPS)):
        raise ValueError(f"cross_conv: coef has shape {coef.shape}, expected ({x.shape[1]}, {len(CROSS_TAPS)})")
    acc = np.zeros_like(x)
    for t, (dh, dw) in enumerate(CROSS_TAPS):
        acc += coef[None, :, t, None, None] * shifted(shifted(x, -dh, 2, pad), -dw, 3, pad)
    return acc


def branch_taps(kind: str, axis: str, reach: int, channels: int) -> list:
    """[(channel slice, tap index)] of one shift branch: which CROSS_TAPS it sums, per channel range
    (box_sum along H / W: every channel, 2 reach + 1 taps; channel_mix: one tap per quarter)."""
    if reach not in (1, 2):
        raise ValueError(f"shift branch reach {reach}: the cross has taps at distance 1 and 2 only")
    every = slice(0, channels)
    if kind == "box":
        offsets = [(d, 0) if axis == "h" else (0, d) for d in range(-reach, reach + 1)]
        return [(every, CROSS_TAPS.index(o)) for o in offsets]
    q = channels // 4       # np.roll by +s gives out[i] = x[i - s]: tap -s; by -s: tap +s
    quarters = ((-reach, 0), (reach, 0), (0, -reach), (0, reach))
    return [(slice(i * q, (i + 1) * q), CROSS_TAPS.index(o)) for i, o in enumerate(quarters)]
