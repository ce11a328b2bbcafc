"""XnorConv2d (hw/ops/xnor_conv2d.py), the binary k x k convolution of a +-1 map with +-1
weights, at every level: per output token the signed sum over its valid taps (a zero-padded tap
counts 0), grouped, strided and dilated.

Reference: torch.nn.functional.conv2d in float64 (zero padding).  Edge cases: groups; odd maps;
dilations whose taps are mostly padding at the border and dilations beyond half the map; stride
2 patch merging; PE = 1 to fully parallel; one image bank (BANKS = 1: read, then emit); one
input channel per group (depthwise) and a one-channel map; a weight ROM in block RAM; the widest
sums (an all +1 image against all +1 and all -1 kernels).
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hw.graph import sint
from hw.resources import weight_rom_in_bram
from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)


def conv_ref(x, wt, stride, pad, dilation, groups):
    """(B, H, W, C) +-1 map, (O, C/G, k, k) +-1 weights -> (B, HO*WO, O), torch in float64."""
    import torch
    import torch.nn.functional as F
    y = F.conv2d(torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2), torch.tensor(wt, dtype=torch.float64),
                 stride=stride, padding=pad, dilation=dilation, groups=groups)
    return y.permute(0, 2, 3, 1).reshape(x.shape[0], -1, wt.shape[0]).numpy().astype(np.int64)


def xnor_conv(name, h, w, c, o, g, k, s, p, d, pe, banks=2, images=3, seed=None):
    rng = np.random.default_rng(h * w + d if seed is None else seed)
    x = rng.choice([-1, 1], (images, h, w, c))
    wt = rng.choice([-1, 1], (o, c // g, k, k))
    terms = (c // g) * k * k
    if images > 1 and o > 1:           # the widest sums: an all +1 image against all +1 / all -1 kernels
        x[0] = 1
        wt[0], wt[-1] = 1, -1
    want = conv_ref(x, wt, s, p, d, g)
    if images > 1 and o > 1:
        inside = conv_ref(np.ones((1, h, w, 1)), np.ones((1, 1, k, k)), s, p, d, 1).max() == k * k
        assert (want[0, :, 0].max() == terms and want[0, :, -1].min() == -terms) == inside   # where a window fits
    return case("XnorConv2d", name, [x.reshape(images, h * w, c)], ["BIPOLAR"], sint(terms),
                dict(H=h, W=w, kernel=k, stride=s, pad=p, dilation=d, groups=g, PE=pe, BANKS=banks),
                dict(w=wt), images=images, want=want)


CASES = {
    # MSGDC branch, odd map, groups
    "msgdc_odd_map": lambda: xnor_conv("xconv_6x5_k3d1g4s1_2_2", 6, 5, 8, 8, 4, 3, 1, 1, 1, 2),
    # dilation 3: most taps of the border pixels are padding, PE = 1
    "dilation3_pe1": lambda: xnor_conv("xconv_6x6_k3d3g4s1_1_2", 6, 6, 8, 8, 4, 3, 1, 3, 3, 1),
    # dilation 5 > half the map, fully parallel outputs
    "dilation5_parallel": lambda: xnor_conv("xconv_7x7_k3d5g4s1_8_2", 7, 7, 8, 8, 4, 3, 1, 5, 5, 8),
    # 2x2 patch merging, stride 2
    "patch_merging_stride2": lambda: xnor_conv("xconv_8x8_k2d1g1s2_4_2", 8, 8, 8, 16, 1, 2, 2, 0, 1, 4),
    # one bank
    "one_bank": lambda: xnor_conv("xconv_6x5_k3d1g4s1_2_1", 6, 5, 8, 8, 4, 3, 1, 1, 1, 2, banks=1),
    # depthwise: one input channel per group (C / G = 1), two outputs per group
    "depthwise": lambda: xnor_conv("xconv_5x5_c4o8_k3d1g4s1_2_2", 5, 5, 4, 8, 4, 3, 1, 1, 1, 2),
    # a one-channel map (C = 1, one group)
    "one_channel": lambda: xnor_conv("xconv_5x4_c1o2_k3d1g1s1_1_2", 5, 4, 1, 2, 1, 3, 1, 1, 1, 1),
    # 64 channels, 2x2 taps: a 256-bit XNOR-popcount per output, whose tree the kernel registers
    # twice (XnorConv2d.popcount_cut)
    "wide_popcount": lambda: xnor_conv("xconv_4x4_c64o4_k2d1g1s2_2_2", 4, 4, 64, 4, 1, 2, 2, 0, 1, 2),
    # 512 outputs, PE = 1: a 512 x 36-bit weight ROM (one RAMB18, full): block RAM
    "weight_rom_in_bram": lambda: xnor_conv("xconv_4x4_c4o512_k3d1g1s1_1_2", 4, 4, 4, 512, 1, 3, 1, 1, 1, 1),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 7), st.integers(1, 7), st.sampled_from([1, 2, 3]),
       st.integers(1, 3), st.sampled_from([1, 2]), st.sampled_from([(4, 1), (4, 2), (4, 4), (3, 3), (2, 1)]),
       st.booleans(), st.integers(1, 2), st.integers(1, 2), st.data())
def test_drawn_sizes_golden_torch_onnx(seed, h, w, k, d, stride, cg, same, mult, images, data):
    """The old property test: zero-padded dilated taps ('same' padding or none), maps smaller
    than the kernel's reach, groups, strides."""
    cin, groups = cg
    pad = d * (k - 1) // 2 if same else 0
    assume(h + 2 * pad - d * (k - 1) >= 1 and w + 2 * pad - d * (k - 1) >= 1)
    cout = groups * mult
    pe = data.draw(st.sampled_from(divisors(cout)), "PE")
    c = xnor_conv("xc", h, w, cin, cout, groups, k, stride, pad, d, pe, images=images, seed=seed)
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
    wt = c.node.params["w"]
    o, pe, groups = wt.shape[0], c.node.attrs["PE"], c.node.attrs["groups"]
    width = pe * wt[0].size + (pe * (groups - 1).bit_length() if groups > 1 else 0)   # PE lanes (+ group indices)
    assert ('rom_style = "block"' in k.source) == weight_rom_in_bram(o // pe, width) == (name == "weight_rom_in_bram")


@pytest.mark.golden
@needs_gxx
@needs_verilator()
@drawn(2)
@given(st.data())
def test_drawn_sizes_and_foldings_csim_rtl(data):
    h = data.draw(st.integers(2, 7), "H")
    w = data.draw(st.integers(2, 7), "W")
    k = data.draw(st.sampled_from([1, 2, 3]), "kernel")
    d = data.draw(st.integers(1, 3), "dilation")
    stride = data.draw(st.sampled_from([1, 2]), "stride")
    pad = data.draw(st.integers(0, d * (k - 1) // 2), "pad")
    assume(h + 2 * pad - d * (k - 1) >= 1 and w + 2 * pad - d * (k - 1) >= 1)
    # C / G >= 2 (one channel per group: the "depthwise" and "one_channel" cases)
    cin, groups = data.draw(st.sampled_from([(4, 1), (4, 2), (8, 4), (6, 3), (2, 1)]), "channels, groups")
    cout = groups * data.draw(st.integers(1, 2), "outputs per group")
    pe = data.draw(st.sampled_from(divisors(cout)), "PE")
    banks = data.draw(st.sampled_from([1, 2]), "BANKS")
    c = xnor_conv(f"xconv_drawn_{h}x{w}_{cin}_{cout}_k{k}d{d}g{groups}s{stride}p{pad}_{pe}_{banks}", h, w, cin,
                  cout, groups, k, stride, pad, d, pe, banks=banks)
    check_csim(c)
    check_rtl(c, seeds=(1,))


def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    c = xnor_conv("xc", 6, 5, 8, 8, 4, 3, 1, 1, 1, 3)
    for gen in (c.op.hls, c.op.rtl):
        with pytest.raises(FoldingError, match=r"xc: PE=3 does not divide 8; legal values: \[1, 2, 4, 8\]"):
            gen(c.io())


def test_bad_shapes_are_rejected():
    def node(name, h, w, c, o, g, k):
        return case("XnorConv2d", name, [np.ones((1, h * w, c))], ["BIPOLAR"], "INT8",
                    dict(H=h, W=w, kernel=k, stride=1, pad=0, dilation=1, groups=g, PE=1),
                    dict(w=np.ones((o, c // g, k, k))))
    # 4 groups of 2 input channels cannot share 6 outputs
    c = node("xc_groups", 4, 4, 8, 6, 4, 1)
    with pytest.raises(ValueError, match="xc_groups: 4 groups do not divide 6 outputs"):
        c.op.rtl(c.io(np.zeros((1, 16, 6), dtype=np.int64)))
    # a 3x3 kernel without padding on a 2x2 map: no output token
    c = node("xc_big", 2, 2, 4, 4, 1, 3)
    with pytest.raises(ValueError, match=r"xc_big: a 3x3 kernel \(dilation 1, padding 0\) on a 2x2 map"):
        c.op.rtl(c.io(np.zeros((1, 1, 4), dtype=np.int64)))


@pytest.mark.parametrize("name", CASES)
def test_binary_work_counts_every_tap_product_and_lane(name):
    """binary_work: C/G x k x k products (padding taps included: the lanes compute them) per output
    channel and pixel of the reference, PE lanes of that many each; busy less than always, by the
    k x k tap cycles the emission spends per pixel besides its O / PE output cycles."""
    from hw.cost import lane_use
    c = CASES[name]()
    a, io = c.node.attrs, c.io()
    terms = int(np.prod(np.shape(c.op.params["w"])[1:]))
    work = c.op.binary_work(io)
    assert work == dict(macs=c.want[0].size * terms, lanes=a["PE"] * terms)
    use = lane_use([dict(name="n", binary_macs=work["macs"], lanes=work["lanes"])], c.op.cost(io)["cycles"])
    assert 0 < use["utilisation"] < 1
