"""The shift unit: circular box sums along H or W and channel-mix rolls.

Pure data movement plus adds on a (B, C, H, W) map; the division by 3 or 5
of the box filters is folded into the LayerScale multiplier that follows, so
the kernel output is the exact integer sum."""
from __future__ import annotations

import numpy as np


def box_sum(x, reach: int, axis: int):
    """sum_{s=-reach..reach} roll(x, s, axis) (circular, as torch.roll)."""
    x = np.asarray(x, dtype=np.int64)
    acc = x.copy()
    for s in range(1, reach + 1):
        acc += np.roll(x, s, axis=axis) + np.roll(x, -s, axis=axis)
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
