"""ShiftConv (hw/ops/shift_conv.py) at every level: the fused shift unit, a circular (or, pad
"zero", zero-padded) depthwise convolution over the 9-tap cross; and its lowering pass (ShiftConv.lower, run by hw.passes.lower),
which fuses each block's six ShiftBranch nodes into one.

Reference: explicit modular indexing of the channel-last map per tap (output (h, w) reads
x[(h + dh) mod H, (w + dw) mod W]).  Edge cases: every tap distinct (4 x 5), maps of 1 to 5 rows
(the taps wrap once or more; 2 x 2: the offsets +-2 wrap onto the centre), one column (every W tap
is the centre), unsigned input, every tap at the largest and at the most negative coefficient with
the input at its extremes (the widest output value is reached), PE = 1 to fully parallel, one bank
(BANKS = 1: read, then emit), a coefficient ROM deep enough for block RAM.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.graph import Graph, Node, dtype_max_abs, sint
from hw.ops.shift_conv import COEF_LUT_DEPTH, ShiftConv, coef_rom_in_bram
from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)

# The taps (dh, dw) in the order of coef's columns: the centre, H -1 +1 -2 +2, W -1 +1 -2 +2.
TAPS = ((0, 0), (-1, 0), (1, 0), (-2, 0), (2, 0), (0, -1), (0, 1), (0, -2), (0, 2))
CMAX = 1 << 17


def reference(x, coef, h, w, zero_pad=False):
    """y[(i, j), c] = sum_t coef[c, t] * x[((i + dh) mod H, (j + dw) mod W), c] on token streams; zero-padded,
    a tap outside the map adds nothing."""
    images, _, c = x.shape
    m = x.reshape(images, h, w, c)
    y = np.zeros_like(m)
    for t, (dh, dw) in enumerate(TAPS):
        rows, cols = (np.arange(h) + dh) % h, (np.arange(w) + dw) % w
        term = coef[:, t] * m[:, rows][:, :, cols]
        if zero_pad:
            inside = ((np.arange(h) + dh >= 0) & (np.arange(h) + dh < h))[:, None] & \
                     ((np.arange(w) + dw >= 0) & (np.arange(w) + dw < w))[None, :]
            term = term * inside[None, :, :, None]
        y += term
    return y.reshape(images, h * w, c)


def shift_conv(pe, h, w, banks=2, signed=True, c=8, bits=10, cmax=CMAX, images=3, seed=0, name=None, zero_pad=False):
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi + 1, (images, h * w, c))
    coef = rng.integers(-cmax, cmax, (c, len(TAPS)))
    coef[0] = cmax - 1                               # every tap at the largest coefficient ...
    x[0, :, 0] = hi                                  # ... on the largest input: the widest value is reached
    if c > 1:
        coef[-1] = -cmax                             # the most negative coefficient on every tap ...
        x[0, :, -1] = lo if signed else hi           # ... on the input's extreme
    in_dtype = f"{'' if signed else 'U'}INT{bits}"
    out_dtype = sint(max(-lo, hi) * int(np.abs(coef).sum(axis=1).max()))
    name = name or f"sc_{h}x{w}_c{c}_pe{pe}_b{banks}_{'s' if signed else 'u'}{bits}{'_zero' if zero_pad else ''}"
    attrs = dict(H=h, W=w, PE=pe, BANKS=banks, **({"pad": "zero"} if zero_pad else {}))
    return case("ShiftConv", name, [x], [in_dtype], out_dtype, attrs,
                dict(coef=coef), images=images, want=reference(x, coef, h, w, zero_pad))


# The old C-simulation cases (tests/test_hls_csim.py, which set every tap of channel 0 to the largest coefficient)
# and RTL cases (tests/test_rtl_maps.py, which set channel 0 to the most negative): each case has both.
CASES = {
    "pe2_4x5": lambda: shift_conv(2, 4, 5, seed=242),                  # every tap distinct
    # the shipped model's last stage: offsets +-2 wrap onto the centre
    "pe1_2x2": lambda: shift_conv(1, 2, 2, seed=122),
    # fully parallel, one column: every W tap is the centre, unsigned input
    "pe8_3x1_unsigned": lambda: shift_conv(8, 3, 1, signed=False, seed=832),
    "pe4_3x3_one_bank": lambda: shift_conv(4, 3, 3, banks=1, seed=431),  # one bank: read, then emit
    # 288 coefficient words: a block-RAM ROM (coef_rom_in_bram)
    "pe1_2x2_32ch_bram_rom": lambda: shift_conv(1, 2, 2, c=32, seed=122),
    # zero padding (BinaryViT's pools): an interior on 5 x 6, every tap reaching past the edge on 2 x 3
    "zero_pe2_5x6": lambda: shift_conv(2, 5, 6, seed=256, zero_pad=True),
    "zero_pe1_2x3_one_bank": lambda: shift_conv(1, 2, 3, banks=1, seed=123, zero_pad=True),
}


def assert_widest_value_reached(c):
    bits = int(c.node.dtype[3:])
    assert np.abs(c.want).max() > dtype_max_abs(f"INT{bits - 1}"), f"{c.node.name}: the widest value is not reached"


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    if name != "zero_pe1_2x3_one_bank":          # there every tap but the centre reaches past an edge somewhere
        assert_widest_value_reached(c)
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 12), st.booleans(), st.integers(2, 18),
       st.integers(0, 2 ** 32 - 1), st.booleans())
def test_drawn_sizes_golden_torch_onnx(h, w, channels, signed, coef_bits, seed, zero_pad):
    c = shift_conv(1, h, w, signed=signed, c=channels, cmax=1 << (coef_bits - 1), images=2, seed=seed, name="sc",
                   zero_pad=zero_pad)
    if not zero_pad:
        assert_widest_value_reached(c)
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
    h, w = data.draw(st.integers(1, 5), "H"), data.draw(st.integers(1, 5), "W")
    c = data.draw(st.integers(1, 16), "channels")
    pe = data.draw(st.sampled_from(divisors(c)), "PE")
    banks = data.draw(st.sampled_from([1, 2]), "BANKS")
    signed = data.draw(st.booleans(), "signed")
    zero_pad = data.draw(st.booleans(), "zero padding")
    case_ = shift_conv(pe, h, w, banks=banks, signed=signed, c=c, seed=h + w + c, zero_pad=zero_pad)
    check_csim(case_)
    check_rtl(case_, seeds=(1,))


def test_taps_are_the_cross_in_coefficient_order():
    from hw.kernels.shift import CROSS_TAPS
    assert TAPS == CROSS_TAPS


@pytest.mark.parametrize("name", CASES)
def test_coefficient_rom_is_block_ram_only_when_deep(name):
    """The ROM (a word of PE lanes per channel fold and tap) is block RAM above COEF_LUT_DEPTH words, in the
    RTL's synthesis attribute as in the cost model."""
    c = CASES[name]()
    op = c.op
    channels, pe = c.xs[0].shape[-1], op.pe
    depth, width = op.coef_rom()
    assert (depth, width) == ShiftConv(c.node).coef_rom() == (channels // pe * len(TAPS), width)
    in_bram = coef_rom_in_bram(depth, width)
    assert in_bram == (channels // pe * len(TAPS) > COEF_LUT_DEPTH) == (name == "pe1_2x2_32ch_bram_rom")
    assert ('rom_style = "block"' in op.rtl(c.io()).source) == in_bram


@pytest.mark.parametrize("coef_shape,pe,match", [
    ((8, 9), 3, r"sc: PE=3 does not divide 8; legal values: \[1, 2, 4, 8\]"),
    ((8, 5), 1, r"sc: coef has shape \(8, 5\), expected \(8, 9\)"),
])
def test_bad_foldings_and_coefficients_are_rejected(coef_shape, pe, match):
    x = np.zeros((1, 6, 8), dtype=np.int64)
    c = case("ShiftConv", "sc", [x], ["INT10"], "INT20", dict(H=2, W=3, PE=pe), dict(coef=np.ones(coef_shape)))
    io = c.io(x)
    for level in (c.op.hls, c.op.rtl):
        with pytest.raises(ValueError, match=match):
            level(io)


# ---------------------------------------------------------------------- the lowering pass
def test_fused_shift_units_compute_the_same_integers(shipped_net, shipped):
    """hw.passes.lower (ShiftConv.lower): each block's six ShiftBranch nodes become one ShiftConv
    feeding the block's output Affine (3 inputs instead of 8); every stream the lowered graph keeps,
    the logits included, equals the network's; the network's own graph is left as it was."""
    from hw.execute import run
    from hw.passes import lower, passes
    assert ("ShiftConv", ShiftConv.lower) in passes()
    g = shipped_net.graph
    before = [(n.name, dict(n.attrs), list(n.inputs)) for n in g.nodes]
    low = lower(g)
    ops = [n.op for n in low.nodes]
    assert ops.count("ShiftConv") == 4 and "ShiftBranch" not in ops and len(low.nodes) == len(g.nodes) - 20
    for n in low.nodes:
        if n.op == "ShiftConv":
            out = low.node(n.name.rsplit(".", 1)[0] + ".out")
            assert out.inputs[-1] == n.outputs[0] and len(out.inputs) == 3
            assert n.params["coef"].shape == (len(n.params["coef"]), 9) and np.all(n.params["coef"] != 0)
    x = shipped[2].images[:12].numpy().transpose(0, 2, 3, 1).astype(np.int64)
    t_net, t_low = {}, {}
    assert np.array_equal(run(low, x, t_low), run(g, x, t_net))
    kept = [n.outputs[0] for n in low.nodes if n.op != "ShiftConv"]
    assert all(np.array_equal(t_low[k], t_net[k]) for k in kept)
    assert before == [(n.name, dict(n.attrs), list(n.inputs)) for n in g.nodes]
    low.nodes[0].attrs["PE"] = 99                                      # folding one does not fold the other
    assert g.nodes[0].attrs.get("PE") != 99


def test_fuse_shift_units_leaves_a_branch_that_other_nodes_read():
    """A ShiftBranch whose output another node also reads is not folded into the Affine."""
    from hw.execute import run
    a = dict(H=2, W=2)
    nodes = [Node("ShiftBranch", "b1", ["x"], ["b1"], dict(kind="box", axis="h", reach=1, **a), {}, "INT12"),
             Node("ShiftBranch", "b2", ["x"], ["b2"], dict(kind="box", axis="w", reach=2, **a), {}, "INT13"),
             Node("Affine", "out", ["b1", "b2"], ["out"], dict(lshifts=[1, 0], shift=2, bits=10, pc_k=[0, 0]),
                  dict(m0=np.arange(1, 5), m1=np.arange(5, 9), bias=np.zeros(4, np.int64)), "INT10"),
             Node("Affine", "tap", ["b2"], ["tap"], dict(lshifts=[0], shift=0, bits=16, pc_k=[0]),
                  dict(m0=np.ones(4, np.int64), bias=np.zeros(4, np.int64)), "INT16")]
    g = Graph(nodes, "x", "out", input_dtype="INT10")
    low = ShiftConv.lower(g)
    assert [n.op for n in low.nodes] == ["ShiftConv", "ShiftBranch", "Affine", "Affine"]
    x = np.random.default_rng(0).integers(-512, 512, (3, 4, 4))
    assert np.array_equal(run(low, x), run(g, x))
    assert low.node("out").inputs == ["b2", "b1"] and low.node("out").attrs["lshifts"] == [0, 1]
