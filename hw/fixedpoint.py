"""Fixed-point conventions shared by every golden kernel.

A fixed-point tensor is an integer array ``x`` with a format ``Fmt(bits, frac)``:
its real value is ``x * 2**-frac`` and it is saturated to ``bits`` (two's
complement, signed).  All arithmetic is on int64 numpy arrays; results are
exact integers, so "bit-exact" means ``np.array_equal``.

Rounding is round-half-up everywhere (``floor(v + 1/2)``), the cheapest
rounding in hardware (add half an LSB, then drop bits); saturation clips to
the format's range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fmt:
    """Signed fixed point: ``bits`` in total, ``frac`` of them fractional
    (``frac`` may be negative or exceed ``bits``: it is a power-of-two scale)."""

    bits: int
    frac: int

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def to_dict(self):
        return {"bits": self.bits, "frac": self.frac}

    def __str__(self):
        return f"s{self.bits}.f{self.frac}"


def rshift_round(x, s: int):
    """floor(x / 2**s + 1/2) for s > 0 (round half up); x * 2**-s (exact) for s <= 0."""
    x = np.asarray(x, dtype=np.int64)
    if s <= 0:
        return x << np.int64(-s)
    return (x + np.int64(1 << (s - 1))) >> np.int64(s)


def saturate(x, bits: int):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def quantize(v, fmt: Fmt):
    """Float -> fixed point (round half up, saturate).  Only for constants and
    for the float reference in tests: the datapath never sees floats."""
    v = np.asarray(v, dtype=np.float64)
    return saturate(np.floor(v * 2.0 ** fmt.frac + 0.5).astype(np.int64), fmt.bits)


def to_float(x, fmt_or_frac) -> np.ndarray:
    frac = fmt_or_frac.frac if isinstance(fmt_or_frac, Fmt) else fmt_or_frac
    return np.asarray(x, dtype=np.float64) * 2.0 ** -frac


def frac_for_range(max_abs: float, bits: int, lo: int = -16, hi: int = 24) -> int:
    """Largest power-of-two scale whose range covers ``max_abs`` at ``bits``."""
    if not max_abs > 0 or not math.isfinite(max_abs):
        return hi
    f = math.floor(math.log2(((1 << (bits - 1)) - 1) / max_abs))
    return int(min(max(f, lo), hi))


def mult_frac(values, mult_bits: int = 16) -> int:
    """Fraction bits M so that round(v * 2**M) fits a signed ``mult_bits``
    multiplier for every v (the per-channel multipliers of an affine kernel)."""
    m = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return frac_for_range(m, mult_bits, lo=-8, hi=30)


def ceil_div_pow2(v, frac: int):
    """ceil(v * 2**frac) for float constants (thresholds)."""
    return np.ceil(np.asarray(v, dtype=np.float64) * 2.0 ** frac).astype(np.int64)
