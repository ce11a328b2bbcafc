"""MSMHA's window kernels at every level, built from one geometry (H, W, win, pooled kernel, PE,
BANKS): AttentionTokens (hw/ops/attention_tokens.py: the map's windows, each followed by the
pooled tokens), WindowReverse (window_reverse.py: the windows' win x win tokens back to the map)
and PooledUpsample (pooled_upsample.py: the pooled tokens summed over the windows, upsampled).

Reference: index loops over images, windows and tokens, written here.  Edge cases: one window
and one pooled token, several windows per map, non-square pooled token counts (no
PooledUpsample then), upsampling by 2 and by 4, PE = 1 to fully parallel, one bank (read, then
emit), pooled tokens at both ends of the format (extreme window sums).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ops.harness import (GAPS, case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors,
                                drawn, needs_gxx, needs_verilator)

OPS = ("AttentionTokens", "WindowReverse", "PooledUpsample")
PREFIX = {"AttentionTokens": "atok", "WindowReverse": "wrev", "PooledUpsample": "pup"}


# ---------------------------------------------------------------------- the reference
def ref_attention_tokens(x, pooled, h, w, win):
    """(B, H*W, C) map + (B, P, C) pooled -> (B * windows, win^2 + P, C), windows in raster order."""
    out = []
    for i in range(x.shape[0]):
        for wy in range(h // win):
            for wx in range(w // win):
                toks = [x[i, (wy * win + dy) * w + wx * win + dx] for dy in range(win) for dx in range(win)]
                out.append(np.stack(toks + list(pooled[i])))
    return np.stack(out)


def ref_window_reverse(ctx, h, w, win):
    """(B * windows, win^2 + P, C) -> (B, H*W, C): the windows' own tokens back in place."""
    nwy, nwx = h // win, w // win
    b = ctx.shape[0] // (nwy * nwx)
    out = np.zeros((b, h * w, ctx.shape[-1]), dtype=np.int64)
    for i in range(b):
        for wy in range(nwy):
            for wx in range(nwx):
                for dy in range(win):
                    for dx in range(win):
                        out[i, (wy * win + dy) * w + wx * win + dx] = ctx[(i * nwy + wy) * nwx + wx, dy * win + dx]
    return out


def ref_pooled_upsample(ctx, h, w, win):
    """(B * windows, win^2 + P, C), P = side^2 -> (B, H*W, C): the pooled tokens summed over the
    windows, each repeated over its (H / side) x (W / side) block."""
    n_win = (h // win) * (w // win)
    b, c = ctx.shape[0] // n_win, ctx.shape[-1]
    p = ctx.shape[1] - win * win
    side = int(round(p ** 0.5))
    out = np.zeros((b, h * w, c), dtype=np.int64)
    for i in range(b):
        s = sum(ctx[i * n_win + j, win * win:] for j in range(n_win)).reshape(side, side, c)
        for y in range(h):
            for x in range(w):
                out[i, y * w + x] = s[y * side // h, x * side // w]
    return out


# ---------------------------------------------------------------------- the cases
def streams(h, w, win, p, c, images, seed, bits=10):
    """A map, its pooled tokens and a context stream of the same geometry (attention layout)."""
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    n_win, n_tok = (h // win) * (w // win), win * win + p
    x = rng.integers(lo, hi + 1, (images, h * w, c))
    pooled = rng.integers(lo, hi + 1, (images, p, c))
    ctx = rng.integers(lo, hi + 1, (images * n_win, n_tok, c))
    ctx[:, win * win:] = np.where(rng.random((images * n_win, p, c)) < 0.5, lo, hi)   # extreme window sums
    return x, pooled, ctx


def window_case(op, name, h, w, win, p, c, pe, banks=2, images=3, seed=0, bits=10):
    x, pooled, ctx = streams(h, w, win, p, c, images, seed, bits)
    attrs = dict(H=h, W=w, win=win, PE=pe, BANKS=banks)
    dt = f"INT{bits}"
    if op == "AttentionTokens":
        return case(op, name, [x, pooled], [dt, dt], dt, attrs, images=images,
                    want=ref_attention_tokens(x, pooled, h, w, win))
    if op == "WindowReverse":
        return case(op, name, [ctx], [dt], dt, attrs, images=images, want=ref_window_reverse(ctx, h, w, win))
    n_win = (h // win) * (w // win)
    ob = ((1 << (bits - 1)) * n_win).bit_length() + 1          # holds n_win x the format's minimum
    return case(op, name, [ctx], [dt], f"INT{ob}", attrs, images=images, want=ref_pooled_upsample(ctx, h, w, win))


def geometry(h, w, win, kp, pe, banks=2, c=8, images=3):
    """The cases of the three kernels (PooledUpsample only where the pooled tokens are a square)
    of one geometry; the pooled tokens are the map pooled by kp x kp."""
    p = (h // kp) * (w // kp)
    tag = f"{h}x{w}_{win}_{p}_{pe}_{banks}"
    ops = OPS if int(np.sqrt(p)) ** 2 == p else OPS[:2]
    return {f"{PREFIX[op]}_{tag}": (lambda op=op: window_case(op, f"{PREFIX[op]}_{tag}", h, w, win, p, c, pe, banks,
                                                              images, seed=h * w + win + pe))
            for op in ops}


def upsample_case(name, h, side, c, pe, banks=2, images=3, seed=0, bits=10):
    """PooledUpsample with win 0: the input is a side x side map alone, nearest-upsampled to h x h
    (BinaryViT's keys and values from pooled tokens, back on the map)."""
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    small = rng.integers(lo, hi + 1, (images, side * side, c))
    small[0, 0] = lo
    f = h // side
    want = small.reshape(images, side, 1, side, 1, c).repeat(f, 2).repeat(f, 4).reshape(images, h * h, c)
    return case("PooledUpsample", name, [small], [f"INT{bits}"], f"INT{bits + 1}",
                dict(H=h, W=h, win=0, PE=pe, BANKS=banks), images=images, want=want)


CASES = {
    # win 0: a plain nearest upsampling (4x4 pooled tokens of a 16x16 map; 2x2 of 4x4, one bank)
    "pups_upsample_16_from_4": lambda: upsample_case("pups_upsample_16_from_4", 16, 4, 8, 2, seed=164),
    "pups_upsample_4_from_2_one_bank": lambda: upsample_case("pups_upsample_4_from_2_one_bank", 4, 2, 4, 4, banks=1,
                                                             seed=42),
    **geometry(4, 4, 4, 4, 1),          # stage 2 of the shipped model: one window, one pooled token, PE = 1
    **geometry(4, 6, 2, 2, 4),          # 2 x 3 windows, 6 pooled tokens (not a square: no PooledUpsample)
    **geometry(6, 6, 3, 2, 8),          # 4 windows, 3 x 3 pooled tokens upsampled by 2, fully parallel
    **geometry(4, 4, 2, 4, 2),          # 4 windows, one pooled token upsampled by 4
    **geometry(4, 4, 2, 2, 2, banks=1),  # one bank: read, then emit
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 2), st.data())
def test_drawn_sizes_golden_torch_onnx(win, nwy, nwx, c, images, data):
    """Partition then reverse is the identity; PooledUpsample wherever the pooled tokens are a
    square whose side divides the (square) map."""
    h, w = nwy * win, nwx * win
    if h == w:
        side = data.draw(st.sampled_from(divisors(h)), "pooled side")
        p = side * side
    else:
        p = data.draw(st.integers(1, 6), "pooled tokens")
    seed = data.draw(st.integers(0, 2 ** 32 - 1), "seed")
    ops = OPS if h == w else OPS[:2]
    outs = {}
    for op in ops:
        cs = window_case(op, "win", h, w, win, p, c, 1, images=images, seed=seed)
        outs[op] = check_golden(cs)
        check_torch(cs)
        check_onnx(cs)
    x = window_case("AttentionTokens", "win", h, w, win, p, c, 1, images=images, seed=seed).xs[0]
    rt = window_case("WindowReverse", "win", h, w, win, p, c, 1, images=images, seed=seed)
    rt.xs[0] = outs["AttentionTokens"]
    assert np.array_equal(rt.golden(), x)                   # partition then reverse = identity


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
    op = data.draw(st.sampled_from(OPS), "op")
    win = data.draw(st.integers(1, 3), "win")
    nwy = data.draw(st.integers(1, 3), "windows down")
    nwx = nwy if op == "PooledUpsample" else data.draw(st.integers(1, 3), "windows across")
    h, w = nwy * win, nwx * win
    if op == "PooledUpsample":
        p = data.draw(st.sampled_from(divisors(h)), "pooled side") ** 2
    else:
        p = data.draw(st.integers(1, 5), "pooled tokens")
    c = data.draw(st.integers(1, 12), "channels")
    pe = data.draw(st.sampled_from(divisors(c)), "PE")
    banks = data.draw(st.sampled_from([1, 2]), "BANKS")
    bits = data.draw(st.integers(2, 12), "bits")
    cs = window_case(op, f"{PREFIX[op]}_drawn_{h}x{w}_{win}_{p}_{c}_{pe}_{banks}_{bits}", h, w, win, p, c, pe, banks,
                     images=2, seed=h * w * c + p, bits=bits)
    check_csim(cs)
    check_rtl(cs, seeds=(1,))


# ---------------------------------------------------------------------- error paths
@pytest.mark.golden
@needs_gxx
def test_inconsistent_input_rows_are_reported():
    from hw import csim
    cs = CASES["atok_4x6_2_6_4_2"]()
    code = cs.op.hls(cs.io())
    x, pooled = np.zeros((2 * 24, 8)), np.zeros((2 * 6 - 1, 8))
    with pytest.raises(csim.CsimError, match="input 1 must have 6 rows per 24 rows of input 0"):
        csim.simulate(code, x, pooled)


@pytest.mark.parametrize("op", OPS)
def test_folding_that_does_not_divide_is_rejected_with_legal_values(op):
    from hw.ops import FoldingError
    cs = window_case(op, "win", 4, 4, 2, 1, 8, 3)
    with pytest.raises(FoldingError, match=r"win: PE=3 does not divide 8; legal values: \[1, 2, 4, 8\]"):
        cs.op.hls(cs.io())
    with pytest.raises(FoldingError, match="PE=3"):
        cs.op.rtl(cs.io())


@pytest.mark.golden
@needs_verilator()
def test_window_reverse_through_node_rtl():
    """A WindowReverse node of a graph (its input's DataType the graph's), its kernel from the
    stream shapes of the graph (hw.ops.io_of), under gaps and back-pressure."""
    from hw import rtlsim
    from hw.graph import Graph, Node
    from hw.ops import io_of, op_of
    h, w, win, p, c = 4, 4, 2, 1, 4
    node = Node("WindowReverse", "wr_node", ["x"], ["y"], attrs=dict(H=h, W=w, win=win, PE=2), dtype="INT6")
    g = Graph([node], "x", "y", input_dtype="INT6")
    k = op_of(node).rtl(io_of(g, node, {"x": (4, win * win + p, c), "y": (1, h * w, c)}))
    ctx = np.random.default_rng(0).integers(-32, 32, (2 * 4, win * win + p, c))
    got = rtlsim.simulate(k, ctx.reshape(-1, c), seed=3, **GAPS)
    assert np.array_equal(got.out, ref_window_reverse(ctx, h, w, win).reshape(-1, c))
