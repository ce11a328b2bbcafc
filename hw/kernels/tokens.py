"""Token movement and pooling kernels: window partition / reverse, pooled
(high-scale) tokens, channel repeat / group sums, nearest upsampling."""
from __future__ import annotations

import numpy as np


def window_partition(x, w: int):
    """(B, C, H, W) -> (B * H/w * W/w, w*w, C), windows row-major."""
    b, c, hh, ww = x.shape
    x = x.transpose(0, 2, 3, 1).reshape(b, hh // w, w, ww // w, w, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def window_reverse(win, w: int, hh: int, ww: int):
    c = win.shape[-1]
    x = win.reshape(-1, hh // w, ww // w, w, w, c).transpose(0, 5, 1, 3, 2, 4)
    return x.reshape(-1, c, hh, ww)


def _blocks(x, k: int):
    b, c, h, w = x.shape
    if h % k or w % k:
        raise ValueError(f"pooling: map {h}x{w} is not a multiple of {k}")
    return x.reshape(b, c, h // k, k, w // k, k)


def max_pool(x, k: int):
    """k x k max pooling, stride k, no padding."""
    return _blocks(np.asarray(x, dtype=np.int64), k).max(axis=(3, 5))


def sum_pool(x, k: int):
    """k x k sum (the average's numerator), stride k, no padding."""
    return _blocks(np.asarray(x, dtype=np.int64), k).sum(axis=(3, 5))


def repeat_channels(x, ratio: int):
    """channel j of the result is x[..., j mod C]."""
    return np.concatenate([x] * ratio, axis=-1)


def group_sum_channels(x, ratio: int):
    """out[..., c] = sum of x[..., c*r:(c+1)*r] (the channel pool's numerator)."""
    *lead, c = x.shape
    return np.asarray(x, dtype=np.int64).reshape(*lead, c // ratio, ratio).sum(-1)


def upsample_nearest(x, factor: int):
    """(B, C, h, w) -> (B, C, h*f, w*f), nearest neighbour."""
    return np.repeat(np.repeat(x, factor, axis=2), factor, axis=3)
