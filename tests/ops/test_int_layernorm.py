"""IntLayerNorm (hw/ops/int_layernorm.py) at every level: per token D = C x - sum(x),
V = sum D^2, inv = floor(2^R / max(isqrt(V + eps), 1)), y = sat(round(D inv gmul + bias, shift)).

Reference: the same arithmetic on Python integers (math.isqrt, unbounded products), written
here.  Edge cases: constant rows (V = 0), one outlier, the largest variance, tiny variances
dominated by eps, perfect squares with eps = 0 (isqrt(0) -> 1), rounding ties (shift 1),
unsigned input, R = 4 (clamped roots, inv = 0), biases that always saturate (both ends reached),
PE = 1 to fully parallel.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)


def ref_layernorm(x, gmul, bias, eps, r_bits, shift, bits):
    """Per token (last axis), on Python integers."""
    x = np.asarray(x, dtype=np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = np.zeros(x.shape, dtype=np.int64)
    for idx in np.ndindex(x.shape[:-1]):
        row = [int(v) for v in x[idx]]
        c, s = len(row), sum(row)
        d = [c * v - s for v in row]
        inv = (1 << r_bits) // max(math.isqrt(sum(e * e for e in d) + eps), 1)
        for j, e in enumerate(d):
            y = e * inv * int(gmul[j]) + int(bias[j])
            y = (y + (1 << (shift - 1))) >> shift if shift > 0 else y << -shift      # round half up
            out[idx + (j,)] = min(max(y, lo), hi)
    return out


def layernorm(name, x, in_dtype, eps, r_bits, shift, bits, pe, gmul, bias, images):
    """An IntLayerNorm of ``bits`` output bits on the tokens x (images x tokens rows of C)."""
    x = np.asarray(x).reshape(images, -1, len(gmul))
    return case("IntLayerNorm", name, [x], [in_dtype], f"INT{bits}",
                dict(eps=eps, r_bits=r_bits, shift=shift, bits=bits, PE=pe), dict(gmul=gmul, bias=bias),
                images=images, want=ref_layernorm(x, gmul, bias, eps, r_bits, shift, bits))


def edge_rows(c, pe, eps, r_bits, shift, bits, signed, gm, tokens=20, images=2):
    """A case whose first image starts with the edge rows."""
    rng = np.random.default_rng(c + pe + shift)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi + 1, (images * tokens, c))
    x[0] = lo                                              # constant rows: V = 0
    x[1] = 7
    x[2] = lo
    x[2, 0] = hi                                           # one outlier: |D| = isqrt(V) at its channel
    x[3] = np.where(np.arange(c) % 2, lo, hi)              # the largest variance
    x[4:10] = rng.integers(-2, 3, (6, c)).clip(lo, hi)     # tiny variances: isqrt(V + eps) dominated by eps
    amp = np.arange(1, 7)[:, None]                         # +-a alternating: V = C^3 a^2, a perfect square
    x[10:16] = np.where(np.arange(c) % 2, -amp if signed else 0, amp)   # when C is one (16) and eps = 0
    gmul = rng.integers(gm[0], gm[1], c)
    brange = 1 << (shift + bits - 1)                       # biases of the output's range ...
    bias = rng.integers(-brange, brange, c)
    bias[0], bias[-1] = 4 * brange, -4 * brange            # ... and two that always saturate
    cs = layernorm(f"ln_{c}_{pe}_{eps}_{r_bits}_{shift}_{int(signed)}", x, f"{'INT' if signed else 'UINT'}{bits}",
                   eps, r_bits, shift, bits, pe, gmul, bias, images)
    assert (cs.want == (1 << (bits - 1)) - 1).any() and (cs.want == -(1 << (bits - 1))).any()   # saturation exercised
    return cs


CASES = {
    # the shipped token norm's scale
    "shipped_scale": lambda: edge_rows(128, 4, 85899, 37, 42, 10, True, (18000, 28000)),
    # eps 0: isqrt(0) -> 1, perfect squares; fully parallel
    "eps0_perfect_squares": lambda: edge_rows(16, 16, 0, 30, 36, 10, True, (-30000, 30000)),
    # shift 1: every odd sum is a rounding tie; PE = 1
    "shift1_ties": lambda: edge_rows(6, 1, 5, 8, 1, 12, True, (-3, 4)),
    # unsigned input
    "unsigned": lambda: edge_rows(9, 3, 100, 24, 28, 8, False, (1000, 3000)),
    # R = 4: most roots above 2^R (inv = 0, clamped root)
    "r4_clamped_roots": lambda: edge_rows(8, 2, 3, 4, 2, 8, True, (-5, 6)),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


def drawn_case(name, seed, c, bits, signed, tokens, images, eps, pe=1):
    """The scale of the property test of the old test_kernel_properties: R from C and the input
    bits, 10 output bits, one zero-variance row."""
    r = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = r.integers(lo, hi + 1, size=(images * tokens, c))
    x[0] = min(7, hi)                                                     # zero variance row
    R = 16 + int(np.ceil(1.5 * np.log2(c))) + bits
    gmul = r.integers(1 << 13, 1 << 15, size=c)
    bias = r.integers(-(1 << 40), 1 << 40, size=c)
    return layernorm(name, x, f"{'INT' if signed else 'UINT'}{bits}", eps, R, R + 14 - 6, 10, pe, gmul, bias, images)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(2, 40), st.integers(4, 12), st.booleans(), st.integers(1, 4),
       st.integers(1, 3), st.integers(0, 50))
def test_drawn_sizes_golden_torch_onnx(seed, c, bits, signed, tokens, images, eps):
    cs = drawn_case("ln", seed, c, bits, signed, tokens, images, eps)
    check_golden(cs)
    check_torch(cs)
    check_onnx(cs)


@pytest.mark.golden
@needs_gxx
@pytest.mark.parametrize("name", CASES)
def test_csim(name):
    check_csim(CASES[name]())


@pytest.mark.golden
@needs_verilator()
@pytest.mark.parametrize("name", CASES)
def test_rtl(name):
    check_rtl(CASES[name]())


@pytest.mark.golden
@needs_gxx
@needs_verilator()
@drawn(2)
@given(st.data())
def test_drawn_sizes_and_foldings_csim_rtl(data):
    c = data.draw(st.integers(2, 24), "channels")
    pe = data.draw(st.sampled_from(divisors(c)), "PE")
    bits = data.draw(st.integers(4, 12), "bits")
    signed = data.draw(st.booleans(), "signed")
    eps = data.draw(st.integers(0, 100), "eps")
    tokens = data.draw(st.integers(2, 6), "tokens")
    cs = drawn_case(f"ln_drawn_{c}_{pe}_{bits}_{int(signed)}_{eps}_{tokens}", c * 1000 + eps, c, bits, signed,
                    tokens, 2, eps, pe)
    check_csim(cs)
    check_rtl(cs, seeds=(1,))


def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    cs = layernorm("ln", np.zeros((2, 128)), "INT10", 1, 30, 30, 10, 5, np.ones(128), np.zeros(128), 1)
    legal = r"\[1, 2, 4, 8, 16, 32, 64, 128\]"
    with pytest.raises(FoldingError, match=r"ln: PE=5 does not divide 128; legal values: " + legal):
        cs.op.hls(cs.io())
    with pytest.raises(FoldingError, match="ln: PE=5 does not divide 128"):
        cs.op.rtl(cs.io())
