"""Cycle-accurate RTL simulation (Verilator) of the map-buffer kernels of templates/rtl/
(map_tokens.sv.j2: ShiftBranch box / mix, ShiftConv, TokenPool; map_conv.sv.j2: XnorConv2d, IntConv2d),
built from hw.graph nodes through node_rtl, against their golden models under random input
gaps and output back-pressure; their steady-state cycles per image against hw.cost.node_cost
(two banks: max(image read, every output word's taps read one per cycle); one bank, BANKS = 1:
the two add up).

Each kernel size / folding is one Verilator build (~2.5 s, cached in build/rtlsim).
"""
import shutil

import numpy as np
import pytest

from hw import rtlsim
from hw.cost import node_cost
from hw.graph import Graph, Node
from hw.kernels.binary import binary_conv2d
from hw.kernels.fixed import int_conv2d
from hw.kernels.shift import box_sum, channel_mix
from hw.kernels.tokens import max_pool, sum_pool

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("c++") is None
                                or not (rtlsim.VENV_BIN / "verilator").exists(),
                                reason="needs make, c++ and .venv/bin/verilator (make setup)")

GAPS = dict(p_gap=0.3, p_stall=0.4)
IMAGES = 3


def _run(node, in_dtype, x, want, rows_in, rows_out, channels, seeds=(1, 2)):
    """node_rtl of a one-node graph; golden equality under gaps / stalls and free-running; the
    free-running cycles between the last words of consecutive images vs node_cost."""
    g = Graph([node], "x", "y", input_dtype=in_dtype)
    k = rtlsim.node_rtl(g, node, channels)
    for seed in seeds:
        got = rtlsim.simulate(k, x, seed=seed, **GAPS)
        assert np.array_equal(got.out, want), f"seed {seed}"
    free = rtlsim.simulate(k, x)
    assert np.array_equal(free.out, want)
    words = rows_out * k.out["folds"]
    ends = free.out_cycles[words - 1::words]
    predicted = node_cost(node, {"x": (rows_in, x.shape[1]), "y": (rows_out, channels)})["cycles"]
    per_image = np.diff(ends)
    assert len(per_image) == IMAGES - 1
    assert np.all(np.abs(per_image - predicted) <= 0.05 * predicted), (per_image, predicted)
    return free


# ---------------------------------------------------------------------- ShiftBranch
@pytest.mark.parametrize("kind,axis,reach,pe,hw_,banks", [
    ("box", "h", 2, 1, (3, 4), 2),     # PE = 1, reach = H - 1: both sides wrap
    ("box", "h", 1, 2, (4, 3), 1),     # one bank: read, then emit
    ("box", "w", 1, 8, (5, 3), 2),        # fully parallel
    ("box", "w", 2, 4, (2, 3), 2),        # reach = W - 1
    ("box", "h", 2, 2, (2, 2), 2),        # reach = H (the shipped model's last stage): wraps twice
    ("box", "w", 3, 1, (3, 2), 2),        # reach > W
    ("mix", "", 1, 2, (5, 7), 2),         # PE = C / 4 (a word per quarter)
    ("mix", "", 2, 1, (3, 4), 2),         # PE = 1
    ("mix", "", 5, 1, (3, 2), 2),
    ("mix", "", 1, 1, (3, 3), 1),      # one bank         # shift beyond the map: mod H, mod W
])
def test_shift_branch_rtl_equals_golden_and_cost(kind, axis, reach, pe, hw_, banks):
    h, w = hw_
    c = 8
    x = np.random.default_rng(reach * 10 + pe + h).integers(-512, 512, (IMAGES, h, w, c))
    m = x.transpose(0, 3, 1, 2)
    want = box_sum(m, reach, 2 if axis == "h" else 3) if kind == "box" else channel_mix(m, reach)
    node = Node("ShiftBranch", f"shift_{kind}{axis}{reach}_{pe}_{h}x{w}_{banks}", ["x"], ["y"],
                attrs=dict(kind=kind, axis=axis, reach=reach, H=h, W=w, PE=pe, BANKS=banks),
                dtype="INT13" if kind == "box" else "INT10")
    _run(node, "INT10", x.reshape(-1, c), want.transpose(0, 2, 3, 1).reshape(-1, c), h * w, h * w, c)


# ---------------------------------------------------------------------- ShiftConv (fused shift unit)
@pytest.mark.parametrize("pe,hw_,banks,signed,c", [
    (2, (4, 5), 2, True, 8),      # every tap distinct
    (1, (2, 2), 2, True, 8),      # the shipped model's last stage: offsets +-2 wrap onto the centre
    (8, (3, 1), 2, False, 8),     # fully parallel, one column: every W tap is the centre, unsigned input
    (4, (3, 3), 1, True, 8),      # one bank: read, then emit
    (1, (2, 2), 2, True, 32),     # 288 coefficient words: a block-RAM ROM (hw.cost.coef_rom_in_bram)
])
def test_shift_conv_rtl_equals_golden_and_cost(pe, hw_, banks, signed, c):
    from hw.cost import coef_rom_in_bram, shift_coef_rom
    from hw.graph import sint
    from hw.kernels.shift import cross_conv
    h, w = hw_
    rng = np.random.default_rng(pe * 100 + h * 10 + banks)
    lo, hi = (-512, 512) if signed else (0, 1024)
    x = rng.integers(lo, hi, (IMAGES, h, w, c))
    coef = rng.integers(-(1 << 17), 1 << 17, (c, 9))
    coef[0] = -(1 << 17)                                   # the most negative coefficient on every tap
    x[0, ..., 0] = lo if signed else hi - 1
    want = cross_conv(x.transpose(0, 3, 1, 2), coef).transpose(0, 2, 3, 1).reshape(-1, c)
    dt = sint(max(-lo, hi - 1) * int(np.abs(coef).sum(axis=1).max()))
    node = Node("ShiftConv", f"shift_conv_{pe}_{h}x{w}_{banks}_{int(signed)}_{c}", ["x"], ["y"],
                attrs=dict(H=h, W=w, PE=pe, BANKS=banks), params=dict(coef=coef), dtype=dt)
    _run(node, "INT10" if signed else "UINT10", x.reshape(-1, c), want, h * w, h * w, c)
    k = rtlsim.node_rtl(Graph([node], "x", "y", input_dtype="INT10"), node, c)
    in_bram = coef_rom_in_bram(*shift_coef_rom(coef, pe))
    assert in_bram == (c // pe * 9 > 256) and ('rom_style = "block"' in k.source) == in_bram


# ---------------------------------------------------------------------- TokenPool
@pytest.mark.parametrize("mode,k,pe,signed,banks", [("max", 2, 2, True, 2), ("sum", 2, 8, True, 2),
                                                    ("max", 3, 1, True, 2), ("sum", 3, 4, False, 2),
                                                    ("sum", 2, 2, True, 1)])
def test_token_pool_rtl_equals_golden_and_cost(mode, k, pe, signed, banks):
    h, w, c = 6, 3 * k if k == 3 else 4, 8
    lo, hi = (-512, 512) if signed else (0, 1024)
    x = np.random.default_rng(k + pe).integers(lo, hi, (IMAGES, h, w, c))
    x[0, :k, :k, 0] = lo                                   # a block of minima: max must not start at 0
    want = (max_pool if mode == "max" else sum_pool)(x.transpose(0, 3, 1, 2), k)
    in_dt = "INT10" if signed else "UINT10"
    node = Node("TokenPool", f"pool_{mode}{k}_{pe}_{int(signed)}_{banks}", ["x"], ["y"],
                attrs=dict(H=h, W=w, k=k, mode=mode, PE=pe, BANKS=banks), dtype=in_dt if mode == "max" else "INT15")
    _run(node, in_dt, x.reshape(-1, c), want.transpose(0, 2, 3, 1).reshape(-1, c), h * w,
         (h // k) * (w // k), c)


# ---------------------------------------------------------------------- XnorConv2d
@pytest.mark.parametrize("h,w,c,o,g,k,s,p,d,pe,banks", [
    (6, 5, 8, 8, 4, 3, 1, 1, 1, 2, 2),      # MSGDC branch, odd map, groups
    (6, 6, 8, 8, 4, 3, 1, 3, 3, 1, 2),      # dilation 3: most taps of the border pixels are padding, PE = 1
    (7, 7, 8, 8, 4, 3, 1, 5, 5, 8, 2),      # dilation 5 > half the map, fully parallel outputs
    (8, 8, 8, 16, 1, 2, 2, 0, 1, 4, 2),     # 2x2 patch merging, stride 2
    (6, 5, 8, 8, 4, 3, 1, 1, 1, 2, 1),      # one bank
])
def test_xnor_conv_rtl_equals_golden_and_cost(h, w, c, o, g, k, s, p, d, pe, banks):
    rng = np.random.default_rng(h * w + d)
    x = rng.choice([-1, 1], (IMAGES, h, w, c))
    wt = rng.choice([-1, 1], (o, c // g, k, k))
    want = binary_conv2d(x.transpose(0, 3, 1, 2).astype(np.int8), wt.astype(np.int8), s, p, d, g)
    ho, wo = want.shape[2:]
    node = Node("XnorConv2d", f"xconv_{h}x{w}_k{k}d{d}g{g}s{s}_{pe}_{banks}", ["x"], ["y"],
                attrs=dict(H=h, W=w, kernel=k, stride=s, pad=p, dilation=d, groups=g, PE=pe, BANKS=banks),
                params=dict(w=wt), dtype="INT8")
    _run(node, "BIPOLAR", (x.reshape(-1, c) + 1) // 2, want.transpose(0, 2, 3, 1).reshape(-1, o), h * w,
         ho * wo, o)


# ---------------------------------------------------------------------- IntConv2d (stem)
@pytest.mark.parametrize("h,w,cin,o,k,s,simd,pe,banks", [
    (8, 8, 3, 6, 2, 2, 4, 3, 2),            # the stem's shape: stride = kernel
    (6, 6, 3, 4, 3, 3, 1, 1, 2),            # PE = SIMD = 1
    (4, 4, 3, 8, 2, 2, 12, 8, 2),           # fully parallel
    (5, 5, 1, 2, 3, 1, 9, 1, 2),            # overlapping windows (stride 1)
    (8, 8, 3, 6, 2, 2, 4, 3, 1),            # one bank
])
def test_int_conv_rtl_equals_golden_and_cost(h, w, cin, o, k, s, simd, pe, banks):
    rng = np.random.default_rng(h + o + simd)
    x = rng.integers(0, 256, (IMAGES, h, w, cin))
    x[0, :k, :k] = 255
    wt = rng.integers(-128, 128, (o, cin, k, k))
    wt[0] = -128                                           # the most negative sum
    want = int_conv2d(x.transpose(0, 3, 1, 2), wt, s)
    ho, wo = want.shape[2:]
    bits = (int(np.abs(wt).reshape(o, -1).sum(1).max()) * 255).bit_length() + 1
    node = Node("IntConv2d", f"iconv_{h}x{w}_k{k}s{s}_{simd}_{pe}_{banks}", ["x"], ["y"],
                attrs=dict(H=h, W=w, stride=s, PE=pe, SIMD=simd, BANKS=banks), params=dict(w=wt),
                dtype=f"INT{bits}")
    _run(node, "UINT8", x.reshape(-1, cin), want.transpose(0, 2, 3, 1).reshape(-1, o), h * w, ho * wo, o)


def test_map_kernels_reject_bad_shapes():
    with pytest.raises(ValueError, match="does not divide"):
        rtlsim.map_token_rtl("bad", "TokenPool", dict(H=5, W=4, k=2, mode="sum"), 8, 1, 10, True, 13)
