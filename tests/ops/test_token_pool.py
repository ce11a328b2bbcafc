"""TokenPool (hw/ops/token_pool.py) at every level: k x k pooling of a map with stride k, max or sum.

Reference: explicit loops over the k x k blocks of the channel-last map.  Edge cases: a block of
minima (max must not start at 0; the most negative sum), unsigned inputs, k = 3 on an odd-width
map, k = 1 (drawn), PE = 1 to fully parallel, one bank (BANKS = 1: read, then emit), a map that k
does not divide (rejected).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.graph import sint
from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator)


def reference(x, h, w, k, mode):
    """Pooling of token streams (images, H*W, C), block by block."""
    images, _, c = x.shape
    m = x.reshape(images, h, w, c)
    y = np.zeros((images, h // k, w // k, c), dtype=np.int64)
    for i in range(h // k):
        for j in range(w // k):
            block = m[:, i * k:(i + 1) * k, j * k:(j + 1) * k]
            y[:, i, j] = block.max(axis=(1, 2)) if mode == "max" else block.sum(axis=(1, 2))
    return y.reshape(images, -1, c)


def token_pool(mode, k, pe, h, w, banks=2, c=8, bits=10, signed=True, out_dtype=None, images=3, seed=0, name=None):
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    in_dtype = f"{'' if signed else 'U'}INT{bits}"
    x = rng.integers(lo, hi + 1, (images, h, w, c))
    x[0, :k, :k, 0] = lo                             # a block of minima: max must not start at 0
    x = x.reshape(images, h * w, c)
    if out_dtype is None:                            # a max keeps the input's format, a sum grows
        out_dtype = in_dtype if mode == "max" else sint(k * k * max(-lo, hi))
    name = name or f"tp_{mode}{k}_{h}x{w}_c{c}_pe{pe}_b{banks}_{'s' if signed else 'u'}{bits}_{out_dtype}"
    return case("TokenPool", name, [x], [in_dtype], out_dtype, dict(H=h, W=w, k=k, mode=mode, PE=pe, BANKS=banks),
                images=images, want=reference(x, h, w, k, mode))


# The old RTL cases (tests/test_rtl_maps.py; the C-simulation cases of tests/test_hls_csim.py are the first three,
# which wrote the sum 14 bits wide): 6 rows, 4 columns (9 for k = 3), 8 channels, INT10 / UINT10 in.
CASES = {
    "max2_pe2": lambda: token_pool("max", 2, 2, 6, 4, seed=4),
    "sum2_pe8": lambda: token_pool("sum", 2, 8, 6, 4, out_dtype="INT14", seed=10),      # fully parallel
    "max3_pe1": lambda: token_pool("max", 3, 1, 6, 9, seed=4),                          # PE = 1, k = 3
    "sum3_pe4_unsigned": lambda: token_pool("sum", 3, 4, 6, 9, signed=False, out_dtype="INT15", seed=7),
    "sum2_pe2_one_bank": lambda: token_pool("sum", 2, 2, 6, 4, banks=1, out_dtype="INT15", seed=4),   # read, then emit
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2, 3]), st.sampled_from(["max", "sum"]),
       st.integers(1, 9), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_drawn_sizes_golden_torch_onnx(hb, wb, k, mode, channels, signed, seed):
    c = token_pool(mode, k, 1, hb * k, wb * k, c=channels, signed=signed, images=2, seed=seed, name="tp")
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
    k = data.draw(st.integers(1, 3), "k")
    h, w = k * data.draw(st.integers(1, 3), "blocks down"), k * data.draw(st.integers(1, 3), "blocks across")
    c = data.draw(st.integers(1, 12), "channels")
    pe = data.draw(st.sampled_from(divisors(c)), "PE")
    mode = data.draw(st.sampled_from(["max", "sum"]), "mode")
    banks = data.draw(st.sampled_from([1, 2]), "BANKS")
    signed = data.draw(st.booleans(), "signed")
    case_ = token_pool(mode, k, pe, h, w, banks=banks, c=c, signed=signed, seed=h + w + c)
    check_csim(case_)
    check_rtl(case_, seeds=(1,))


@pytest.mark.parametrize("h,pe,match", [
    (5, 1, "tp: pooling 2x2 does not divide the 5x4 map"),
    (6, 3, r"tp: PE=3 does not divide 8; legal values: \[1, 2, 4, 8\]"),
])
def test_bad_shapes_and_foldings_are_rejected(h, pe, match):
    from hw.ops import FoldingError
    x = np.zeros((1, h * 4, 8), dtype=np.int64)
    c = case("TokenPool", "tp", [x], ["INT10"], "INT13", dict(H=h, W=4, k=2, mode="sum", PE=pe))
    io = c.io(np.zeros((1, (h // 2) * 2, 8)))       # (no golden: 2x2 blocks do not tile 5 rows)
    for level in (c.op.hls, c.op.rtl):
        with pytest.raises(FoldingError, match=match):
            level(io)
