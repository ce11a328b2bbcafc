"""RPReLU (hw/ops/rprelu.py) at every level: y = sat_bits(round((z >= 0 ? z * m_pos[c] : z * m_neg[c]) + bias,
shift)), one rounding (half up) and saturation; m_pos is the fixed 2^M, the bias per channel (C,) or per
token and channel (T, C) (a position embedding after a downsampling).

Reference: Python integers (floor((acc + 2^(s-1)) / 2^s), acc * 2^-s for s <= 0, then clipped).  Edge
cases: z = 0 (the positive slope) and z = -1, the most negative input times the most negative slope
(saturation), PE = 1 to fully parallel; Yosys counts: one DSP per lane, a constant multiplier keeps a
table out of block RAM.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.ops import fixed_point
from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator, needs_yosys)


def requant(acc, shift: int, bits: int) -> np.ndarray:
    """Round half up once (floor((acc + 2^(s-1)) / 2^s); acc * 2^-s for s <= 0) and saturate, in Python integers."""
    acc = np.asarray(acc, dtype=object)
    y = acc * 2 ** -shift if shift <= 0 else (acc + 2 ** (shift - 1)) // 2 ** shift
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.array([min(max(int(v), lo), hi) for v in y.reshape(-1)], dtype=np.int64).reshape(y.shape)


def reference(z, m_pos, m_neg, bias, shift, bits) -> np.ndarray:
    z = np.asarray(z, dtype=object)
    y = np.where(z >= 0, z * np.asarray(m_pos, dtype=object), z * np.asarray(m_neg, dtype=object))
    return requant(y + np.asarray(bias, dtype=object), shift, bits)


def rprelu(name, z, in_dtype, m_pos, m_neg, bias, shift, bits, pe, images=1):
    """An RPReLU node on the token stream ``z`` (images, T, C)."""
    return case("RPReLU", name, [z], [in_dtype], f"INT{bits}", dict(shift=shift, bits=bits, PE=pe),
                dict(m_pos=m_pos, m_neg=m_neg, bias=bias), images=images,
                want=reference(z, m_pos, m_neg, bias, shift, bits))


def six_channels(name, pe):
    """6 channels, 40 rows of INT10, m_pos = 2^8, m_neg of +-300, biases of +-20000, shift 8."""
    rng = np.random.default_rng(pe)
    c, rows = 6, 40
    z = rng.integers(-512, 512, (rows, c))
    z[0], z[1], z[2] = 0, -1, -512                   # z = 0 takes m_pos; z = -1; the most negative input ...
    m_pos, m_neg = np.full(c, 256), rng.integers(-300, 300, c)
    m_neg[0] = -300                                  # ... times the most negative slope: saturates (511)
    bias = rng.integers(-20000, 20000, c)
    return rprelu(name, z.reshape(1, rows, c), "INT10", m_pos, m_neg, bias, 8, 10, pe)


CASES = {
    "pe1": lambda: six_channels("rprelu_1", 1),
    "pe3": lambda: six_channels("rprelu_3", 3),
    "parallel": lambda: six_channels("rprelu_6", 6),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@pytest.mark.parametrize("name", CASES)
def test_saturation_is_exercised(name):
    assert check_golden(CASES[name]()).max() == 511                # -512 * -300


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 9), st.integers(2, 16), st.integers(0, 24), st.booleans())
def test_drawn_sizes_golden_torch_onnx(seed, channels, bits, m, token_bias):
    """16-bit inputs and negative slopes, m_pos = 2^M (M up to 24), shifts M - 2 .. M + 5, 21-bit biases."""
    r = np.random.default_rng(seed)
    z = r.integers(-(1 << 15), 1 << 15, (2, 3, channels))
    z[0, 0] = 0
    bias = r.integers(-(1 << 20), 1 << 20, (3, channels) if token_bias else channels)
    c = rprelu("rp", z, "INT16", np.full(channels, 1 << m), r.integers(-(1 << 15), 1 << 15, channels), bias,
               m + int(r.integers(-2, 6)), bits, 1, images=2)
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
    in_bits = data.draw(st.integers(2, 12), "in_bits")
    m = data.draw(st.integers(0, 10), "M")
    shift = m + data.draw(st.integers(-2, 5), "shift - M")
    bits = data.draw(st.integers(2, 12), "bits")
    tokens = data.draw(st.integers(1, 4), "tokens")
    token_bias = data.draw(st.booleans(), "token bias")
    r = np.random.default_rng(c * 1000 + pe * 100 + in_bits)
    z = r.integers(-(1 << (in_bits - 1)), 1 << (in_bits - 1), (2, tokens, c))
    z[0, 0] = 0
    bias = r.integers(-10 ** 4, 10 ** 4, (tokens, c) if token_bias else c)
    case_ = rprelu(f"rprelu_drawn_{c}_{pe}_{in_bits}_{m}_{shift}_{bits}_{tokens}{'t' if token_bias else 'c'}", z,
                   f"INT{in_bits}", np.full(c, 1 << m), r.integers(-3000, 3000, c), bias, shift, bits, pe, images=2)
    check_csim(case_)
    check_rtl(case_, seeds=(1,))


# ---------------------------------------------------------------------- synthesis
@pytest.mark.golden
@needs_yosys()
def test_yosys_rprelu_takes_one_dsp_per_lane():
    # 16-bit input, 16- and 14-bit slopes: an 18 x 16 product fits one DSP48E1; with the slope chosen
    # inside the product Yosys kept 34-bit operands and used two per lane
    from hw import yosys
    rng = np.random.default_rng(3)
    m_pos, m_neg = rng.integers(-2 ** 15, 2 ** 15, 8), rng.integers(-2 ** 13, 2 ** 13, 8)
    c = rprelu("rprelu_dsp", np.zeros((1, 2, 8)), "INT16", m_pos, m_neg, rng.integers(-100, 100, 8), 20, 10, 2)
    k = c.op.rtl(c.io())
    assert yosys.synth_counts(k.source, k.module)["DSP"] == 2 == c.op.cost(c.io())["dsps"]


@pytest.mark.golden
@needs_yosys()
def test_a_constant_multiplier_does_not_put_a_table_in_block_ram():
    """256 channels: a positive slope of 2^14 on every channel, a 12-bit negative slope and a 12-bit
    bias: 40-bit table words, 10 kbit, of which 24 bits (6 kbit) vary: below FIXED_TABLE_BRAM_BITS,
    so LUTs, and Yosys (which drops the constant columns) agrees."""
    from hw import yosys
    rng = np.random.default_rng(5)
    ch = 256
    m_pos, m_neg, bias = np.full(ch, 1 << 14), rng.integers(-2000, 2000, ch), rng.integers(-2000, 2000, ch)
    assert ch * (16 + 12 + 12) >= fixed_point.FIXED_TABLE_BRAM_BITS > ch * (12 + 12)
    c = rprelu("rprelu_const_pos", np.zeros((1, 4, ch)), "INT10", m_pos, m_neg, bias, 14, 10, 1)
    k = c.op.rtl(c.io())
    assert 'rom_style = "block"' not in k.source
    assert c.op.cost(c.io())["bram36"] == 0
    assert yosys.synth_counts(k.source, k.module)["BRAM"] == 0


# ---------------------------------------------------------------------- errors
def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    c = six_channels("rp", 4)
    with pytest.raises(FoldingError, match=r"rp: PE=4 does not divide 6; legal values: \[1, 2, 3, 6\]"):
        c.op.hls(c.io())
    with pytest.raises(FoldingError, match="rp: PE=4 does not divide 6"):
        c.op.rtl(c.io())
