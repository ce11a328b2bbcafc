"""IntLinear (hw/ops/int_linear.py), the classifier, at every level: x (K,) times 8-bit weights
(N, K) plus a bias (N,), exact integer sums (the accumulator sized from the input type).

The stream is the graph's: one K-vector per image (TokenSum's output), (images, K).
Reference: numpy int64 matrix product.  Edge cases: PE = SIMD = 1 to fully parallel; signed and
unsigned inputs at both ends of their format against an all -128 weight row, with the bias of
the matching sign: the widest sum the accumulator is sized for is reached; the shipped head's
shape (256 -> 10), whose weight ROM is block RAM.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.resources import weight_rom_in_bram
from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)

BIAS = 10 ** 5 - 1


def int_linear(name, kk, n, simd, pe, bits, signed, images=5, seed=None):
    rng = np.random.default_rng(kk * n + pe if seed is None else seed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi + 1, (images, kk))
    wt = rng.integers(-128, 128, (n, kk))
    bias = rng.integers(-BIAS, BIAS + 1, n)
    x[0] = lo                                  # both ends of the input format ...
    if images > 1:
        x[1] = hi
    wt[0] = -128                               # ... against an all -128 row (8-bit weights) ...
    bias[0] = BIAS if signed else -BIAS        # ... and the bias of the same sign: the widest sum
    want = x @ wt.T + bias
    bound = int(np.abs(wt).sum(1).max()) * max(-lo, hi) + BIAS
    assert (not signed and images == 1) or np.abs(want).max() == bound
    return case("IntLinear", name, [x], [f"{'' if signed else 'U'}INT{bits}"], f"INT{bound.bit_length() + 1}",
                dict(PE=pe, SIMD=simd), dict(w=wt, bias=bias), images=images, want=want)


CASES = {
    # PE = SIMD = 1
    "pe1_simd1": lambda: int_linear("ilin_8x6_1_1_13True", 8, 6, 1, 1, 13, True),
    # fully parallel
    "parallel": lambda: int_linear("ilin_16x10_16_10_13True", 16, 10, 16, 10, 13, True),
    # unsigned 8-bit input, SIMD = 3, PE = 2
    "unsigned": lambda: int_linear("ilin_12x4_3_2_8False", 12, 4, 3, 2, 8, False),
    # the shipped head's shape (256 -> 10), PE = SIMD = 1: a 2560 x 8-bit weight ROM in block RAM
    "head_rom_in_bram": lambda: int_linear("ilin_256x10_1_1_13True", 256, 10, 1, 1, 13, True, images=3),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 3), st.integers(1, 32), st.integers(1, 10), st.integers(2, 16),
       st.booleans(), st.data())
def test_drawn_sizes_golden_torch_onnx(seed, images, kk, n, bits, signed, data):
    simd = data.draw(st.sampled_from(divisors(kk)), "SIMD")
    pe = data.draw(st.sampled_from(divisors(n)), "PE")
    c = int_linear("fc", kk, n, simd, pe, bits, signed, images=images, seed=seed)
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
    c = CASES[name]()
    n, kk = c.node.params["w"].shape
    nf, sf = n // c.node.attrs["PE"], kk // c.node.attrs["SIMD"]
    k, free = check_rtl(c)
    assert free.cycles_per_row == nf * sf                  # II = 1: NF x SF cycles per vector
    in_bram = weight_rom_in_bram(nf * sf, c.node.attrs["PE"] * c.node.attrs["SIMD"] * 8)   # 8-bit weights
    assert ('rom_style = "block"' in k.source) == in_bram == (name == "head_rom_in_bram")


@pytest.mark.golden
@needs_gxx
@needs_verilator()
@drawn(2)
@given(st.data())
def test_drawn_sizes_and_foldings_csim_rtl(data):
    kk = data.draw(st.integers(2, 24), "K")
    n = data.draw(st.integers(1, 10), "N")
    simd = data.draw(st.sampled_from(divisors(kk)), "SIMD")
    pe = data.draw(st.sampled_from(divisors(n)), "PE")
    bits = data.draw(st.integers(2, 16), "bits")
    signed = data.draw(st.booleans(), "signed")
    c = int_linear(f"ilin_drawn_{kk}x{n}_{simd}_{pe}_{bits}{signed}", kk, n, simd, pe, bits, signed, images=3)
    check_csim(c)
    check_rtl(c, seeds=(1,))


@pytest.mark.golden
@needs_gxx
def test_csim_with_the_exact_width_tables_of_synthesis(monkeypatch):
    """Under synthesis the weight table is ap_int<8> (not the int8_t g++ builds with): a kernel
    built that way equals golden too."""
    from hw import csim
    monkeypatch.setattr(csim, "CXXFLAGS", [*csim.CXXFLAGS, "-DBHVIT_EXACT_TABLES"])
    c = int_linear("exact_ilin", 8, 4, 4, 2, 10, True, images=6, seed=5)
    code = check_csim(c)
    assert "BHVIT_SWORD(8, int8_t)" in code.code


def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    c = case("IntLinear", "fc", [np.zeros((1, 256))], ["INT13"], "INT25", dict(SIMD=3, PE=1),
             dict(w=np.ones((10, 256)), bias=np.zeros(10)))
    for gen in (c.op.hls, c.op.rtl):
        with pytest.raises(FoldingError, match=r"fc: SIMD=3 does not divide 256; legal values: "
                                               r"\[1, 2, 4, 8, 16, 32, 64, 128, 256\]"):
            gen(c.io())
    c = int_linear("fc2", 8, 6, 2, 4, 10, True)
    for gen in (c.op.hls, c.op.rtl):
        with pytest.raises(FoldingError, match=r"fc2: PE=4 does not divide 6; legal values: \[1, 2, 3, 6\]"):
            gen(c.io())
