"""Binary kernels: thresholds (sign with a learnable bias), XNOR-popcount
matrix products and binary convolutions with zero-padded (three-valued) taps.

Binary tensors are int8 arrays of +1/-1.  The hardware stores them as bits
(1 <-> +1) and computes a K-term dot product as ``2 * popcount(xnor) - K``;
:func:`xnor_popcount_dot` is that form, :func:`xnor_matmul` the same numbers
computed with a (fast, exact) float32 matrix product.
"""
from __future__ import annotations

import numpy as np


def threshold(x, t, axis: int = -1):
    """sign(x + move) on a fixed-point tensor: +1 where x >= t[c], else -1.

    ``t = ceil(-move * 2**frac)`` makes the integer compare equal to the float
    condition x + move >= 0 (so sign(0) = +1, as in Brevitas)."""
    x = np.asarray(x, dtype=np.int64)
    shape = [1] * x.ndim
    shape[axis] = -1
    return np.where(x >= np.asarray(t, dtype=np.int64).reshape(shape), 1, -1).astype(np.int8)


def xnor_popcount_dot(x_bits, w_bits):
    """Hardware form of a +-1 dot product on bit vectors (1 <-> +1):
    x_bits (..., K) bool, w_bits (N, K) bool -> (..., N) = 2*popcount(xnor) - K."""
    x_bits = np.asarray(x_bits, dtype=bool)
    w_bits = np.asarray(w_bits, dtype=bool)
    k = x_bits.shape[-1]
    agree = ~(x_bits[..., None, :] ^ w_bits)          # xnor, (..., N, K)
    return 2 * agree.sum(-1, dtype=np.int64) - k


def xnor_matmul(xb, wb):
    """(..., K) +-1 times (N, K) +-1 -> (..., N) int64.  float32 is exact here:
    every partial sum is an integer of magnitude <= K < 2**24."""
    xb = np.asarray(xb)
    wb = np.asarray(wb)
    if xb.shape[-1] != wb.shape[-1]:
        raise ValueError(f"xnor_matmul: input width {xb.shape[-1]} != weight width {wb.shape[-1]}")
    if xb.shape[-1] >= 1 << 24:
        raise ValueError("xnor_matmul: K >= 2**24 is not exact in float32")
    out = xb.astype(np.float32) @ wb.astype(np.float32).T
    return out.astype(np.int64)


def _im2col(x, k: int, stride: int, padding: int, dilation: int, dtype):
    """(B, C, H, W) -> (B, C, k*k, Ho, Wo), zero padded."""
    b, c, h, w = x.shape
    xp = np.zeros((b, c, h + 2 * padding, w + 2 * padding), dtype=dtype)
    xp[:, :, padding:padding + h, padding:padding + w] = x
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    cols = np.empty((b, c, k * k, ho, wo), dtype=dtype)
    for ky in range(k):
        for kx in range(k):
            y0, x0 = ky * dilation, kx * dilation
            cols[:, :, ky * k + kx] = xp[:, :, y0:y0 + stride * (ho - 1) + 1:stride,
                                         x0:x0 + stride * (wo - 1) + 1:stride]
    return cols, ho, wo


def grouped_conv(x, w, stride=1, padding=0, dilation=1, groups=1, dtype=np.float32):
    """Exact integer convolution through a float matrix product (the caller
    guarantees every partial sum is exactly representable in ``dtype``)."""
    x = np.asarray(x)
    w = np.asarray(w)
    o, cg, k, k2 = w.shape
    if k != k2:
        raise ValueError("square kernels only")
    b, c = x.shape[:2]
    if c != cg * groups or o % groups:
        raise ValueError(f"conv: {c} input channels, weight {w.shape}, groups {groups} do not match")
    cols, ho, wo = _im2col(x, k, stride, padding, dilation, dtype)
    cols = cols.reshape(b, groups, cg * k * k, ho * wo)
    wg = w.astype(dtype).reshape(groups, o // groups, cg * k * k)
    out = np.einsum("gok,bgkp->bgop", wg, cols, optimize=True)
    return np.rint(out).astype(np.int64).reshape(b, o, ho, wo)


def binary_conv2d(xb, wb, stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1):
    """Binary convolution of a +-1 map with +-1 weights.  'same' padding pads
    the *binary* map with 0, so a border tap contributes 0, not +-1: in
    hardware the window generator emits a 'valid' mask next to each tap bit
    and the popcount counts only valid taps (sum = 2*popcount(xnor & valid) - n_valid)."""
    return grouped_conv(xb, wb, stride, padding, dilation, groups, np.float32)
