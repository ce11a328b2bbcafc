"""Thresholding (hw/ops/thresholding.py) at every level: +1 where x >= t[c], else -1.

Reference: numpy.where.  Edge cases: x == t (sign(0) = +1), thresholds below and above the
input format (always / never), both ends of the format, PE = 1 to fully parallel.
"""
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)


def thresholding(name, c, bits, pe, tokens=9, images=1, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (images, tokens, c))
    t = rng.integers(lo - 50, hi + 50, c)            # includes always-on / always-off channels
    t[0], t[-1] = lo - 1000, hi + 1000
    x[0, -1] = lo
    x[-1, -1, -1] = hi
    x[0, 0] = t.clip(lo, hi)                         # x == t: sign(0) = +1
    tb = max(int(np.abs(t).max()).bit_length() + 1, 2)
    return case("Thresholding", name, [x], [f"INT{bits}"], "BIPOLAR",
                dict(NumChannels=c, PE=pe, numSteps=1, inputDataType=f"INT{bits}", weightDataType=f"INT{tb}",
                     outputDataType="BIPOLAR", ActVal=0),
                dict(thresholds=t.reshape(c, 1)), images=images, want=np.where(x >= t, 1, -1))


CASES = {
    "pe1": lambda: thresholding("thr_12_6_1", 12, 6, 1),
    "pe3": lambda: thresholding("thr_12_6_3", 12, 6, 3),
    "parallel_160bit_words": lambda: thresholding("thr_16_10_16", 16, 10, 16),
    "pe4_10bit": lambda: thresholding("thr_12_10_4", 12, 10, 4, images=2),
    "odd_channels": lambda: thresholding("thr_7_4_7", 7, 4, 7),
    "16bit": lambda: thresholding("thr_5_16_1", 5, 16, 1),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(2, 9), st.integers(2, 16), st.integers(-3, 8), st.integers(0, 2 ** 32 - 1))
def test_drawn_sizes_golden_torch_onnx(tokens, channels, bits, frac, seed):
    """Any binary point of the input (the PyTorch form's surrogate is scaled by it): sign(0) = +1."""
    c = thresholding("thr", channels, bits, 1, tokens=tokens, seed=seed)
    c.fmt = {"x0": SimpleNamespace(frac=frac)}
    y = check_golden(c)
    x, t = c.xs[0][0, 0], c.node.params["thresholds"][:, 0]
    assert np.all(y[0, 0][x == t] == 1)               # x == t
    check_torch(c)
    check_onnx(c)


@pytest.mark.golden
@needs_gxx
@pytest.mark.parametrize("name", CASES)
def test_csim(name):
    check_csim(CASES[name]())


@pytest.mark.golden
@needs_verilator()
@pytest.mark.parametrize("name", CASES)
def test_rtl(name):
    c = CASES[name]()
    k, free = check_rtl(c)
    assert free.latency == 1 and free.cycles_per_row == c.node.attrs["NumChannels"] // c.node.attrs["PE"]


@pytest.mark.golden
@needs_gxx
@needs_verilator()
@drawn(2)
@given(st.data())
def test_drawn_sizes_and_foldings_csim_rtl(data):
    c = data.draw(st.integers(2, 20), "channels")
    pe = data.draw(st.sampled_from(divisors(c)), "PE")
    bits = data.draw(st.integers(2, 12), "bits")
    case_ = thresholding(f"thr_drawn_{c}_{pe}_{bits}", c, bits, pe, tokens=data.draw(st.integers(2, 6), "tokens"))
    check_csim(case_)
    check_rtl(case_, seeds=(1,))


def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    c = thresholding("thr", 8, 8, 3)
    with pytest.raises(FoldingError, match=r"thr: PE=3 does not divide 8; legal values: \[1, 2, 4, 8\]"):
        c.op.hls(c.io())
