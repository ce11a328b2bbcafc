"""Lut (hw/ops/lut.py) at every level: y = table[x - min] on a signed ``in_bits``-bit stream (the stem's GELU).

Reference: the table indexed per value in Python.  Edge cases: both ends of the table (x = min, x =
max), a 64-entry and 1024-entry table, table entries of the full output width, PE = 1 to fully
parallel.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)


def reference(x, table, in_bits) -> np.ndarray:
    lo = -(1 << (in_bits - 1))
    x = np.asarray(x)
    return np.array([int(table[int(v) - lo]) for v in x.reshape(-1)], dtype=np.int64).reshape(x.shape)


def lut(name, c, pe, ib, out_bits=13, tokens=12, images=1, seed=None, table_range=3000):
    rng = np.random.default_rng(c + ib if seed is None else seed)
    table = rng.integers(-table_range, table_range, 1 << ib)
    x = rng.integers(-(1 << (ib - 1)), 1 << (ib - 1), (images, tokens, c))
    flat = x.reshape(-1)
    flat[0], flat[-1] = -(1 << (ib - 1)), (1 << (ib - 1)) - 1         # both ends of the table
    return case("Lut", name, [x], [f"INT{ib}"], f"INT{out_bits}", dict(in_bits=ib, PE=pe), dict(table=table),
                images=images, want=reference(x, table, ib))


CASES = {
    "pe1_64_entries": lambda: lut("lut_6_1_6", 6, 1, 6),
    "gelu_1024_entries_pe2": lambda: lut("gelu_8_2_10", 8, 2, 10, tokens=10, images=3, seed=7),
    "parallel_1024_entries": lambda: lut("lut_8_8_10", 8, 8, 10),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 5), st.integers(1, 9), st.integers(2, 10))
def test_drawn_sizes_golden_torch_onnx(seed, tokens, channels, in_bits):
    c = lut("lut", channels, 1, in_bits, out_bits=10, tokens=tokens, images=2, seed=seed, table_range=512)
    check_golden(c)
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
    check_rtl(CASES[name]())


@pytest.mark.golden
@needs_gxx
@needs_verilator()
@drawn(2)
@given(st.data())
def test_drawn_sizes_and_foldings_csim_rtl(data):
    c = data.draw(st.integers(2, 16), "channels")
    pe = data.draw(st.sampled_from(divisors(c)), "PE")
    ib = data.draw(st.integers(2, 8), "in_bits")
    ob = data.draw(st.integers(2, 14), "out_bits")
    tokens = data.draw(st.integers(2, 6), "tokens")
    case_ = lut(f"lut_drawn_{c}_{pe}_{ib}_{ob}_{tokens}", c, pe, ib, out_bits=ob, tokens=tokens, images=2,
                table_range=1 << (ob - 1))
    check_csim(case_)
    check_rtl(case_, seeds=(1,))


# ---------------------------------------------------------------------- errors
def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    c = lut("gelu", 6, 4, 6)
    with pytest.raises(FoldingError, match=r"gelu: PE=4 does not divide 6; legal values: \[1, 2, 3, 6\]"):
        c.op.hls(c.io())
    with pytest.raises(FoldingError, match="gelu: PE=4 does not divide 6"):
        c.op.rtl(c.io())


def test_a_table_of_the_wrong_size_or_wider_than_the_output_is_rejected():
    c = lut("gelu", 6, 1, 6)
    io = c.io()
    c.node.params["table"] = c.node.params["table"][:-1]
    with pytest.raises(ValueError, match="gelu: table of 63 entries for a 6-bit input"):
        c.op.hls(io)
    with pytest.raises(ValueError, match="gelu: table of 63 entries for a 6-bit input"):
        c.op.rtl(io)
    wide = lut("gelu_wide", 6, 1, 6, out_bits=12)                  # entries of +-3000 need 13 bits
    with pytest.raises(ValueError, match="gelu_wide: table entries need 13 bits, the output has 12"):
        wide.op.rtl(wide.io())
