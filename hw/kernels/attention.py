"""Attention kernels: integer LayerNorm and QD attention.

QD attention (paper eq. 10-11) on binary Q, K, V:
  S = Q_b K_b^T is an integer in [-d, d] (d = head dim), so
  exp((S - d)/sqrt(d)) is a (2d+1)-entry table E of unsigned integers
  (E[d] = 2**P at the largest score); softmax A_j = E_j / sum_k E_k.
  The 2-bit quantizer round(s*A) (s = 3) becomes integer compares:
      level_j = #{sigma in 1..s : 2*s*E_j >= (2*sigma - 1) * sum_k E_k}
  (ties go up: the threshold is 'round half up'), and the context is
  level @ V_b, an integer in [-s*n, s*n] whose real value is context/s.
"""
from __future__ import annotations

import math

import numpy as np

from ..fixedpoint import rshift_round, saturate


def exp_table(d: int, prob_bits: int = 16, temperature: float | None = None):
    """E[s + d] = round(2**P * exp((s - d) / sqrt(d))) for s = -d..d."""
    t = math.sqrt(d) if temperature is None else temperature
    s = np.arange(-d, d + 1, dtype=np.float64)
    return np.floor(2.0 ** prob_bits * np.exp((s - d) / t) + 0.5).astype(np.int64)


def level_thresholds(levels: int, num1=None, step=None, den=None) -> tuple:
    """(den, [num_sigma]) of the level compares den * E_j >= num_sigma * total.

    QD (the default): den = 2 L, num_sigma = 2 sigma - 1, i.e. round(L * A) >= sigma - 1/2.
    Any other quantiser whose levels are an arithmetic progression of thresholds on A
    (num1 / den, (num1 + step) / den, ...) takes its own num1, step and den: BinaryViT's
    c * clip(round(A / c), 0, 1) is one level at A >= c / 2."""
    if num1 is None:
        return 2 * levels, [2 * sigma - 1 for sigma in range(1, levels + 1)]
    return int(den), [int(num1) + (sigma - 1) * int(step) for sigma in range(1, levels + 1)]


def qd_attention(qb, kb, vb, table, levels: int = 3, num1=None, step=None, den=None):
    """qb (..., n, d), kb (..., m, d), vb (..., m, dv), all +-1 -> (..., n, dv) int64.

    Returns the integer context sum_j level_ij * v_j (level_ij = #{sigma : den E_ij >= num_sigma
    total_i}, see :func:`level_thresholds`; the real value is context / levels for QD)."""
    d = qb.shape[-1]
    scores = np.rint(qb.astype(np.float32) @ np.swapaxes(kb, -1, -2).astype(np.float32)).astype(np.int64)
    e = np.asarray(table, dtype=np.int64)[scores + d]
    total = e.sum(-1, keepdims=True)
    den, nums = level_thresholds(levels, num1, step, den)
    lev = np.zeros_like(e)
    for num in nums:
        lev += (den * e >= num * total)
    return np.rint(lev.astype(np.float32) @ vb.astype(np.float32)).astype(np.int64)


def isqrt(v):
    """Exact floor(sqrt(v)) of non-negative int64 values below 2**62.

    The float64 square root is within one of the answer there (its argument
    is rounded to 53 bits, the root to 26+), so one correction each way makes
    it exact; (s+1)**2 stays below 2**63."""
    v = np.asarray(v, dtype=np.int64)
    if v.size and (v.min() < 0 or v.max() >= 1 << 62):
        raise ValueError("isqrt: argument outside [0, 2**62)")
    s = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    s = np.where(s * s > v, s - 1, s)
    s = np.where((s + 1) * (s + 1) <= v, s + 1, s)
    return s


def layernorm_int(x, gmul, bias, eps_int: int, r_bits: int, shift: int, bits: int):
    """Integer LayerNorm over the last axis (C channels).

    D = C*x - sum(x) = C (x - mean) exactly; V = sum D^2 = C^3 var (in LSB^2).
    inv = floor(2**R / isqrt(V + E)) with E = eps * C^3 (LSB^2), so
    D * inv / 2**R = (x - mean) / (sqrt(C) * std).  The sqrt(C) and gamma go
    into the per-channel multiplier gmul; y = sat(rshift_round(D*inv*gmul + bias, shift)).
    Since |D| <= sqrt(V), |D * inv| <= 2**R: the product needs R + 1 + gmul's bits."""
    x = np.asarray(x, dtype=np.int64)
    c = x.shape[-1]
    d = c * x - x.sum(-1, keepdims=True)
    v = (d * d).sum(-1, keepdims=True)
    inv = (np.int64(1) << np.int64(r_bits)) // np.maximum(isqrt(v + eps_int), 1)
    y = d * inv * np.asarray(gmul, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    return saturate(rshift_round(y, shift), bits)
