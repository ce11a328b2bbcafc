"""Fixed-point arithmetic kernels: the per-channel multiply-add that every
BN / alpha / bias / LayerScale / shortcut / residual add folds into, RPReLU,
table lookups and plain integer products (stem and classifier)."""
from __future__ import annotations

import numpy as np

from ..fixedpoint import rshift_round, saturate
from .binary import grouped_conv


def _chan(v, ndim: int, axis: int):
    v = np.asarray(v, dtype=np.int64)
    if v.ndim <= 1:
        shape = [1] * ndim
        shape[axis] = -1
        return v.reshape(shape) if v.ndim == 1 else v
    return v


def affine_sum(terms, bias, shift: int, bits: int, axis: int = -1):
    """y = sat_bits( rshift_round( sum_i (x_i * m_i) << l_i  + bias, shift ) ).

    ``terms`` is a list of (x_i, m_i, l_i): an integer tensor, its per-channel
    integer multiplier (along ``axis``) and the left shift that brings the
    product to the accumulator's binary point.  ``bias`` is per channel or
    broadcastable to the output (position embeddings).  One such kernel
    implements BN, alpha*popcount, shortcuts, LayerScale and residual adds at
    once, with a single rounding."""
    acc = None
    for x, m, l in terms:
        x = np.asarray(x, dtype=np.int64)
        t = (x * _chan(m, x.ndim, axis)) << np.int64(l)
        acc = t if acc is None else acc + t
    b = np.asarray(bias, dtype=np.int64)
    acc = acc + (_chan(b, acc.ndim, axis) if b.ndim <= 1 else b)
    return saturate(rshift_round(acc, shift), bits)


def rprelu(z, m_pos, m_neg, bias, shift: int, bits: int, axis: int = -1):
    """RPReLU after its input shift: y = sat(rshift_round((z >= 0 ? z*m_pos : z*m_neg) + bias, shift)).

    The shift gamma is already folded into the producer of z; m_pos = 2**M and
    m_neg = round(slope * 2**M) per channel; bias carries zeta (and, after a
    downsampling, the position embedding)."""
    z = np.asarray(z, dtype=np.int64)
    y = np.where(z >= 0, z * _chan(m_pos, z.ndim, axis), z * _chan(m_neg, z.ndim, axis))
    b = np.asarray(bias, dtype=np.int64)
    y = y + (_chan(b, y.ndim, axis) if b.ndim <= 1 else b)
    return saturate(rshift_round(y, shift), bits)


def lut(x, table, in_bits: int):
    """y = table[x - min]: a ROM addressed by a signed ``in_bits`` input."""
    x = np.asarray(x, dtype=np.int64)
    lo = -(1 << (in_bits - 1))
    table = np.asarray(table, dtype=np.int64)
    if table.shape != (1 << in_bits,):
        raise ValueError(f"lut: table has {table.shape} entries, expected {1 << in_bits}")
    if x.min(initial=0) < lo or x.max(initial=0) >= lo + (1 << in_bits):
        raise ValueError("lut: input outside the table's range")
    return table[x - lo]


def int_conv2d(x, w, stride: int = 1, padding: int = 0):
    """Integer convolution (stem): exact through float64 while every partial
    sum stays below 2**53."""
    return grouped_conv(x, w, stride, padding, 1, 1, np.float64)


def int_matmul(x, w):
    """(..., K) int times (N, K) int -> (..., N) int64, exact through float64."""
    out = np.asarray(x, dtype=np.float64) @ np.asarray(w, dtype=np.float64).T
    if np.abs(out).max(initial=0) >= 2.0 ** 53:
        raise OverflowError("int_matmul: partial sums exceed 2**53")
    return np.rint(out).astype(np.int64)
