"""ShiftBranch (hw/ops/shift_branch.py) at every level: one branch of BHViT's shift module on a
map, circular as torch.roll.

Reference: numpy.roll on the channel-last map, written here from the model's definition (box: the
sum of the 2 reach + 1 rolls by -reach..reach along H or W; mix: the channel quarters rolled
+reach along H, -reach along H, +reach along W, -reach along W).  Edge cases: reach = map size - 1
(both sides wrap), reach = map size (wraps twice), reach > map size (shift mod H, mod W), maps of
one row or column, PE = 1 to fully parallel, PE = C / 4 of a channel mix (a word per quarter), one
bank (BANKS = 1: read, then emit), a channel at the input's minimum everywhere (the most negative
box sum), unsigned inputs (drawn).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.graph import sint
from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)


def reference(x, kind, axis, reach, h, w):
    """The branch on token streams (images, H*W, C), by numpy.roll of the (images, H, W, C) map."""
    images, _, c = x.shape
    m = x.reshape(images, h, w, c)
    if kind == "box":
        ax = 1 if axis == "h" else 2
        y = sum(np.roll(m, s, ax) for s in range(-reach, reach + 1))
    else:
        q = c // 4
        y = np.concatenate([np.roll(m[..., :q], reach, 1), np.roll(m[..., q:2 * q], -reach, 1),
                            np.roll(m[..., 2 * q:3 * q], reach, 2), np.roll(m[..., 3 * q:], -reach, 2)], axis=-1)
    return y.reshape(images, h * w, c)


def shift_branch(kind, axis, reach, h, w, pe, banks=2, c=8, bits=10, signed=True, out_dtype=None, images=3, seed=0,
                 name=None):
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi + 1, (images, h * w, c))
    x[0, :, 0] = lo                                  # a channel at the minimum: the most negative box sum
    x[-1, -1, -1] = hi
    taps = 2 * reach + 1 if kind == "box" else 1
    if out_dtype is None:                            # a box sum grows; a channel mix moves values as they are
        out_dtype = sint(taps * max(-lo, hi)) if kind == "box" else f"{'' if signed else 'U'}INT{bits}"
    name = name or f"sb_{kind}{axis}{reach}_{h}x{w}_c{c}_pe{pe}_b{banks}_{'s' if signed else 'u'}{bits}_{out_dtype}"
    attrs = dict(kind=kind, axis=axis, reach=reach, H=h, W=w, PE=pe, BANKS=banks)
    return case("ShiftBranch", name, [x], [f"{'' if signed else 'U'}INT{bits}"], out_dtype, attrs, images=images,
                want=reference(x, kind, axis, reach, h, w))


# The old C-simulation cases (tests/test_hls_csim.py) and RTL cases (tests/test_rtl_maps.py); INT10 in,
# a box sum INT13 out, 8 channels.
CASES = {
    # --- from the C simulation
    "box_h1_pe2_5x7": lambda: shift_branch("box", "h", 1, 5, 7, 2, out_dtype="INT13", seed=12),
    "box_w2_pe8_5x7": lambda: shift_branch("box", "w", 2, 5, 7, 8, out_dtype="INT13", seed=28),
    # reach up to the map size: wrap-around on both sides
    "box_h2_pe1_3x2": lambda: shift_branch("box", "h", 2, 3, 2, 1, out_dtype="INT13", seed=21),
    # --- from the RTL simulation
    # PE = 1, reach = H - 1: both sides wrap
    "box_h2_pe1_3x4": lambda: shift_branch("box", "h", 2, 3, 4, 1, out_dtype="INT13", seed=24),
    # one bank: read, then emit
    "box_h1_pe2_4x3_one_bank": lambda: shift_branch("box", "h", 1, 4, 3, 2, banks=1, out_dtype="INT13", seed=16),
    # fully parallel
    "box_w1_pe8_5x3": lambda: shift_branch("box", "w", 1, 5, 3, 8, out_dtype="INT13", seed=23),
    # reach = W - 1
    "box_w2_pe4_2x3": lambda: shift_branch("box", "w", 2, 2, 3, 4, out_dtype="INT13", seed=26),
    # reach = H (the shipped model's last stage): wraps twice
    "box_h2_pe2_2x2": lambda: shift_branch("box", "h", 2, 2, 2, 2, out_dtype="INT13", seed=24),
    # reach > W
    "box_w3_pe1_3x2": lambda: shift_branch("box", "w", 3, 3, 2, 1, out_dtype="INT13", seed=34),
    # PE = C / 4 (a word per quarter)  (also a C-simulation case)
    "mix1_pe2_5x7": lambda: shift_branch("mix", "", 1, 5, 7, 2, seed=17),
    # PE = 1  (also a C-simulation case)
    "mix2_pe1_3x4": lambda: shift_branch("mix", "", 2, 3, 4, 1, seed=24),
    # shift beyond the map: mod H, mod W
    "mix5_pe1_3x2": lambda: shift_branch("mix", "", 5, 3, 2, 1, seed=54),
    # one bank
    "mix1_pe1_3x3_one_bank": lambda: shift_branch("mix", "", 1, 3, 3, 1, banks=1, seed=14),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.sampled_from(["box", "mix"]), st.sampled_from(["h", "w"]),
       st.integers(1, 7), st.integers(1, 4), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_drawn_sizes_wrap_circularly_golden_torch_onnx(h, w, kind, axis, reach, quarter, signed, seed):
    """Maps smaller than the reach (wrapping once or more), either axis, either kind, signed or not."""
    c = shift_branch(kind, axis, reach, h, w, 1, c=4 * quarter, signed=signed, images=2, seed=seed, name="sb")
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
    kind = data.draw(st.sampled_from(["box", "mix"]), "kind")
    axis = data.draw(st.sampled_from(["h", "w"]), "axis") if kind == "box" else ""
    reach = data.draw(st.integers(1, 4), "reach")
    h, w = data.draw(st.integers(1, 5), "H"), data.draw(st.integers(1, 5), "W")
    c = 4 * data.draw(st.integers(1, 4), "quarter") if kind == "mix" else data.draw(st.integers(1, 12), "channels")
    pe = data.draw(st.sampled_from(divisors(c if kind == "box" else c // 4)), "PE")   # a mix folds a quarter
    banks = data.draw(st.sampled_from([1, 2]), "BANKS")
    signed = data.draw(st.booleans(), "signed")
    case_ = shift_branch(kind, axis, reach, h, w, pe, banks=banks, c=c, signed=signed, seed=reach + h + w)
    check_csim(case_)
    check_rtl(case_, seeds=(1,))


@pytest.mark.parametrize("kind,channels,pe,match", [
    ("box", 8, 3, r"sb: PE=3 does not divide 8; legal values: \[1, 2, 4, 8\]"),
    ("mix", 8, 4, r"sb: PE=4 does not divide 2; legal values: \[1, 2\]"),      # a mix folds a quarter
    ("mix", 6, 1, "channel mix needs channels divisible by 4, got 6"),
])
def test_bad_foldings_and_shapes_are_rejected(kind, channels, pe, match):
    from hw.ops import FoldingError
    x = np.zeros((1, 6, channels), dtype=np.int64)
    c = case("ShiftBranch", "sb", [x], ["INT10"], "INT13",
             dict(kind=kind, axis="h", reach=1, H=2, W=3, PE=pe))
    io = c.io(x)                                     # (no golden: a mix of 6 channels has none)
    for level in (c.op.hls, c.op.rtl):
        with pytest.raises(FoldingError, match=match):
            level(io)


# ---------------------------------------------------------------------- zero padding (BinaryViT)
def zero_reference(x, axis, reach, h, w):
    """A box sum along H or W with zeros beyond the map: count_include_pad average pool x (2 reach + 1)."""
    images, _, c = x.shape
    m = x.reshape(images, h, w, c)
    pad = [(0, 0), (reach, reach), (0, 0), (0, 0)] if axis == "h" else [(0, 0), (0, 0), (reach, reach), (0, 0)]
    p = np.pad(m, pad)
    n = h if axis == "h" else w
    y = sum(p[:, s:s + n] if axis == "h" else p[:, :, s:s + n] for s in range(2 * reach + 1))
    return y.reshape(images, h * w, c)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.sampled_from(["h", "w"]), st.integers(1, 3), st.integers(0, 2 ** 32 - 1))
def test_zero_padded_box_golden_torch_onnx(h, w, axis, reach, seed):
    x = np.random.default_rng(seed).integers(-512, 512, (2, h * w, 4))
    c = case("ShiftBranch", "sb_zero", [x], ["INT10"], sint((2 * reach + 1) * 512),
             dict(kind="box", axis=axis, reach=reach, H=h, W=w, PE=1, BANKS=2, pad="zero"), images=2,
             want=zero_reference(x, axis, reach, h, w))
    check_golden(c)
    check_torch(c)
    check_onnx(c)
    # no kernel of its own: the flows fuse it into a zero-padded ShiftConv (tests/ops/test_shift_conv.py)
    for level in (c.op.hls, c.op.rtl):
        with pytest.raises(ValueError, match="fuse it into a ShiftConv"):
            level(c.io())


def test_zero_padded_branches_fuse_into_a_zero_padded_shift_conv():
    """BinaryViT's four pool branches (box h / w, reach 1 / 2, zero-padded) become one ShiftConv with
    pad 'zero' and the same integers; circular and zero-padded branches are never fused together."""
    from hw.execute import run
    from hw.graph import Graph, Node
    from hw.ops.shift_conv import ShiftConv
    a = dict(H=3, W=4, pad="zero")
    names = [("h", 1), ("w", 1), ("h", 2), ("w", 2)]
    nodes = [Node("ShiftBranch", f"blk.shift.{ax}{r}", ["x"], [f"b{i}"], dict(kind="box", axis=ax, reach=r, **a), {},
                  "INT14") for i, (ax, r) in enumerate(names)]
    nodes.append(Node("Affine", "blk.out", [f"b{i}" for i in range(4)], ["out"],
                      dict(lshifts=[0, 1, 0, 2], shift=3, bits=12, pc_k=[0] * 4),
                      {**{f"m{i}": np.arange(1, 5) * (i + 1) for i in range(4)}, "bias": np.zeros(4, np.int64)},
                      "INT12"))
    g = Graph(nodes, "x", "out", input_dtype="INT10")
    low = ShiftConv.lower(g)
    assert [n.op for n in low.nodes] == ["ShiftConv", "Affine"] and low.nodes[0].attrs["pad"] == "zero"
    x = np.random.default_rng(1).integers(-512, 512, (2, 12, 4))
    assert np.array_equal(run(low, x), run(g, x))
    nodes[0].attrs = dict(nodes[0].attrs, pad="")                 # one circular branch: nothing fused
    assert [n.op for n in ShiftConv.lower(Graph(nodes, "x", "out", input_dtype="INT10")).nodes].count("ShiftConv") == 0
