"""IntConv2d (hw/ops/int_conv2d.py), the stem: an integer k x k convolution (no padding) of the
uint8 image with 8-bit weights, exact sums, at every level.

Reference: torch.nn.functional.conv2d in float64.  Edge cases: the stem's shape (stride =
kernel); overlapping windows (stride < kernel, stride 1); odd maps; PE = SIMD = 1 to fully
parallel; one image bank (BANKS = 1: read, then emit); a weight ROM in block RAM; the extreme
sums (an all-255 image against all -128 and all 127 kernels: both ends of the output format's
range are reached).
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hw.resources import weight_rom_in_bram
from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)


def conv_ref(x, wt, stride):
    """(B, H, W, Cin) image, (O, Cin, k, k) weights -> (B, HO*WO, O), torch in float64."""
    import torch
    import torch.nn.functional as F
    y = F.conv2d(torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2), torch.tensor(wt, dtype=torch.float64),
                 stride=stride)
    return y.permute(0, 2, 3, 1).reshape(x.shape[0], -1, wt.shape[0]).numpy().astype(np.int64)


def int_conv(name, h, w, cin, o, k, s, simd, pe, banks=2, images=3, seed=None):
    rng = np.random.default_rng(h * w + k + o + simd if seed is None else seed)
    x = rng.integers(0, 256, (images, h, w, cin))
    wt = rng.integers(-128, 128, (o, cin, k, k))
    if images > 1:
        x[0] = 255                                     # the extreme sums: an all-255 image with ...
    wt[0] = -128                                       # ... an all-minimum kernel and ...
    if o > 1:
        wt[-1] = 127                                   # ... an all-maximum one
    want = conv_ref(x, wt, s)
    if images > 1:
        assert want[0, :, 0].min() == -128 * 255 * cin * k * k                  # the most negative sum
        assert o == 1 or want[0, :, -1].max() == 127 * 255 * cin * k * k       # the most positive
    bound = int(np.abs(wt).reshape(o, -1).sum(1).max()) * 255
    return case("IntConv2d", name, [x], ["UINT8"], f"INT{bound.bit_length() + 1}",
                dict(H=h, W=w, stride=s, PE=pe, SIMD=simd, BANKS=banks), dict(w=wt), images=images, want=want)


CASES = {
    # the stem's shape (k = stride), one input channel, PE = SIMD = 1 (old C simulation case)
    "stem_1ch_pe1_simd1": lambda: int_conv("iconv_8x8_1_8_k2s2_1_1", 8, 8, 1, 8, 2, 2, 1, 1),
    # two channels, PE = SIMD = 2 (old C simulation case)
    "folded": lambda: int_conv("iconv_6x10_2_4_k2s2_2_2", 6, 10, 2, 4, 2, 2, 2, 2),
    # stride < kernel (overlapping taps), odd map, fully parallel (old C simulation case)
    "overlap_odd_parallel": lambda: int_conv("iconv_7x9_3_6_k3s2_27_6", 7, 9, 3, 6, 3, 2, 27, 6),
    # stride 1 (old C simulation case)
    "stride1": lambda: int_conv("iconv_5x6_3_4_k3s1_9_2", 5, 6, 3, 4, 3, 1, 9, 2),
    # the stem's shape: stride = kernel (old RTL case)
    "stem": lambda: int_conv("iconv_8x8_3_6_k2s2_4_3_2", 8, 8, 3, 6, 2, 2, 4, 3),
    # PE = SIMD = 1 (old RTL case)
    "pe1_simd1": lambda: int_conv("iconv_6x6_3_4_k3s3_1_1_2", 6, 6, 3, 4, 3, 3, 1, 1),
    # fully parallel (old RTL case)
    "parallel": lambda: int_conv("iconv_4x4_3_8_k2s2_12_8_2", 4, 4, 3, 8, 2, 2, 12, 8),
    # overlapping windows (stride 1), one channel (old RTL case)
    "overlap_stride1": lambda: int_conv("iconv_5x5_1_2_k3s1_9_1_2", 5, 5, 1, 2, 3, 1, 9, 1),
    # one bank (old RTL case)
    "one_bank": lambda: int_conv("iconv_8x8_3_6_k2s2_4_3_1", 8, 8, 3, 6, 2, 2, 4, 3, banks=1),
    # 64 outputs of 3 x 4 x 4 terms, PE = SIMD = 1: a 3072 x 8-bit weight ROM in block RAM
    "weight_rom_in_bram": lambda: int_conv("iconv_8x8_3_64_k4s4_1_1_2", 8, 8, 3, 64, 4, 4, 1, 1),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 6), st.integers(1, 2), st.data())
def test_drawn_sizes_golden_torch_onnx(seed, cin, h, w, k, stride, o, images, data):
    """The old property test (the stem's stride = kernel among others), any stride."""
    assume(k <= min(h, w))
    simd = data.draw(st.sampled_from(divisors(cin * k * k)), "SIMD")
    pe = data.draw(st.sampled_from(divisors(o)), "PE")
    c = int_conv("stem", h, w, cin, o, k, stride, simd, pe, images=images, seed=seed)
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
    k, _ = check_rtl(c)
    wt, a = c.node.params["w"], c.node.attrs
    steps = (wt.shape[0] // a["PE"]) * (wt[0].size // a["SIMD"])
    in_bram = weight_rom_in_bram(steps, a["PE"] * a["SIMD"] * 8)                    # 8-bit weights
    assert ('rom_style = "block"' in k.source) == in_bram == (name == "weight_rom_in_bram")


@pytest.mark.golden
@needs_gxx
@needs_verilator()
@drawn(2)
@given(st.data())
def test_drawn_sizes_and_foldings_csim_rtl(data):
    h = data.draw(st.integers(2, 8), "H")
    w = data.draw(st.integers(2, 8), "W")
    k = data.draw(st.integers(1, min(3, h, w)), "kernel")
    stride = data.draw(st.integers(1, 3), "stride")
    cin = data.draw(st.integers(1, 3), "Cin")
    o = data.draw(st.integers(1, 8), "outputs")
    simd = data.draw(st.sampled_from(divisors(cin * k * k)), "SIMD")
    pe = data.draw(st.sampled_from(divisors(o)), "PE")
    banks = data.draw(st.sampled_from([1, 2]), "BANKS")
    c = int_conv(f"iconv_drawn_{h}x{w}_{cin}_{o}_k{k}s{stride}_{simd}_{pe}_{banks}", h, w, cin, o, k, stride, simd,
                 pe, banks=banks)
    check_csim(c)
    check_rtl(c, seeds=(1,))


def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    c = int_conv("stem_pe", 8, 8, 3, 6, 2, 2, 4, 4)
    for gen in (c.op.hls, c.op.rtl):
        with pytest.raises(FoldingError, match=r"stem_pe: PE=4 does not divide 6; legal values: \[1, 2, 3, 6\]"):
            gen(c.io())
    c = int_conv("stem_simd", 8, 8, 3, 6, 2, 2, 5, 3)
    for gen in (c.op.hls, c.op.rtl):
        with pytest.raises(FoldingError, match=r"stem_simd: SIMD=5 does not divide 12; legal values: "
                                               r"\[1, 2, 3, 4, 6, 12\]"):
            gen(c.io())


def test_bad_inputs_and_shapes_are_rejected():
    c = int_conv("stem_int8", 8, 8, 3, 6, 2, 2, 4, 3)
    c.in_dtypes = ["INT8"]
    for gen in (c.op.hls, c.op.rtl):
        with pytest.raises(ValueError, match="stem_int8: the stem kernel takes 8-bit unsigned pixels, not INT8"):
            gen(c.io())
    c = int_conv("stem_narrow", 8, 8, 3, 6, 2, 2, 4, 3)
    c.node.dtype = "INT16"                            # the sums reach 12 x 128 x 255
    for gen in (c.op.hls, c.op.rtl):
        with pytest.raises(ValueError, match=r"stem_narrow: 16 output bits cannot hold the sums \(up to 391680\)"):
            gen(c.io())
    c = case("IntConv2d", "stem_big", [np.zeros((1, 2, 2, 1))], ["UINT8"], "INT20", dict(H=2, W=2, stride=1),
             dict(w=np.ones((2, 1, 3, 3))))
    for gen in (c.op.hls, c.op.rtl):                  # a 3x3 kernel on a 2x2 image
        with pytest.raises(ValueError, match="stem_big: a 3x3 kernel on a 2x2 image"):
            gen(c.io(np.zeros((1, 1, 2), dtype=np.int64)))
