"""PatchConcat (hw/ops/patch_concat.py) at every level: the k x k tokens of every patch as one token.

Reference: explicit loops over patches and taps.  Edge cases: PE = 1 to fully parallel, one band
bank (read, then emit), a band that is the whole map (k = H), k = 1 (every token its own patch),
k = 3, unsigned values, both ends of the format.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)


def reference(x, h, w, k):
    """out[i * W/k + j, (dy * k + dx) * C + c] = x[(i * k + dy) * W + j * k + dx, c]."""
    b, _, c = x.shape
    out = np.zeros((b, (h // k) * (w // k), k * k * c), dtype=np.int64)
    for i in range(h // k):
        for j in range(w // k):
            for dy in range(k):
                for dx in range(k):
                    t = (dy * k + dx) * c
                    out[:, i * (w // k) + j, t:t + c] = x[:, (i * k + dy) * w + j * k + dx]
    return out


def patch_concat(name, h, w, c, k, pe=1, banks=2, dtype="INT10", images=3, seed=0):
    rng = np.random.default_rng(seed)
    bits = int(dtype.lstrip("UINT"))
    lo, hi = (0, (1 << bits) - 1) if dtype.startswith("U") else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    x = rng.integers(lo, hi + 1, (images, h * w, c))
    x[0, 0], x[-1, -1] = lo, hi                     # both ends of the format
    return case("PatchConcat", name, [x], [dtype], dtype, dict(H=h, W=w, k=k, PE=pe, BANKS=banks), images=images,
                want=reference(x, h, w, k))


CASES = {
    "pe1": lambda: patch_concat("pcat_4x4_c4_k2_p1", 4, 4, 4, 2),
    "one_bank": lambda: patch_concat("pcat_6x4_c4_k2_p2_b1", 6, 4, 4, 2, pe=2, banks=1),
    "k3_unsigned": lambda: patch_concat("pcat_6x6_c6_k3_p3_u8", 6, 6, 6, 3, pe=3, dtype="UINT8"),
    "whole_map_band": lambda: patch_concat("pcat_2x2_c8_k2_p4", 2, 2, 8, 2, pe=4),   # k = H: the band is the map
    "parallel_k1": lambda: patch_concat("pcat_3x5_c8_k1_p8", 3, 5, 8, 1, pe=8),      # k = 1: out = in
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(0, 2 ** 32 - 1))
def test_drawn_sizes_golden_torch_onnx(k, hb, wb, c, seed):
    check_golden(c_ := patch_concat("pcat", k * hb, k * wb, c, k, images=2, seed=seed))
    check_torch(c_)
    check_onnx(c_)


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
    k = data.draw(st.integers(1, 3), "k")
    h, w = k * data.draw(st.integers(1, 3), "bands"), k * data.draw(st.integers(1, 3), "patches")
    c = data.draw(st.integers(1, 8), "channels")
    pe = data.draw(st.sampled_from(divisors(c)), "PE")
    banks = data.draw(st.sampled_from([1, 2]), "BANKS")
    c_ = patch_concat(f"pcat_drawn_{h}x{w}_c{c}_k{k}_p{pe}_b{banks}", h, w, c, k, pe=pe, banks=banks)
    check_csim(c_)
    check_rtl(c_, seeds=(1,))


def test_patches_that_do_not_tile_the_map_and_bad_folding_are_rejected():
    from hw.ops import FoldingError
    c = patch_concat("pcat_bad", 4, 4, 4, 2, pe=3)
    with pytest.raises(FoldingError, match=r"pcat_bad: PE=3 does not divide 4"):
        c.op.hls(c.io())
    c = patch_concat("pcat_bad", 4, 4, 4, 2)
    c.node.attrs["k"] = 3
    with pytest.raises(FoldingError, match=r"pcat_bad: 3x3 patches do not tile the 4x4 map"):
        c.op.rtl(c.io(out=np.zeros((3, 1, 36))))
