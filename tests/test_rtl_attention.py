"""Cycle-accurate RTL simulation (Verilator) of the attention-path kernels of templates/rtl/
(AttentionTokens, WindowReverse, PooledUpsample, IntLayerNorm, QDAttention) against their golden
models under random input gaps and output back-pressure, with the edge cases of
tests/test_hls_csim.py; their steady-state cycles against hw.cost.node_cost.

Each kernel size / folding is one Verilator build (~2.5-4 s, cached in build/rtlsim).
"""
import shutil

import numpy as np
import pytest

from hw import ops, rtlsim
from hw.cost import node_cost
from hw.graph import Graph, Node

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("c++") is None
                                or not (rtlsim.VENV_BIN / "verilator").exists(),
                                reason="needs make, c++ and .venv/bin/verilator (make setup)")

GAPS = dict(p_gap=0.3, p_stall=0.4)


def _period(res, k, words_per_unit):
    """Mean cycles between the last output words of consecutive images / windows (steady state)."""
    ends = res.out_cycles[words_per_unit - 1::words_per_unit]
    return float(np.diff(ends).mean())


def _check(k, xs, want, seeds=(1, 2)):
    for seed in seeds:
        got = rtlsim.simulate(k, *xs, seed=seed, **GAPS)
        assert np.array_equal(got.out, want), f"seed {seed}"
    free = rtlsim.simulate(k, *xs)
    assert np.array_equal(free.out, want)
    return free


# ---------------------------------------------------------------------- window reshuffles
@pytest.mark.parametrize("h,w,win,kp,pe,banks", [
    (4, 4, 4, 4, 1, 2),     # one window, one pooled token, PE = 1
    (4, 6, 2, 2, 4, 2),     # 2 x 3 windows, 6 pooled tokens (not a square: no PooledUpsample)
    (6, 6, 3, 2, 8, 2),     # 4 windows, 3 x 3 pooled tokens upsampled by 2, fully parallel
    (4, 4, 2, 4, 2, 2),     # 4 windows, one pooled token upsampled by 4
    (4, 4, 2, 2, 2, 1),     # one bank: read, then emit
])
def test_window_kernels_rtl_equal_golden_and_cost(h, w, win, kp, pe, banks):
    rng = np.random.default_rng(h * w + win + pe)
    c, b = 8, 3
    p = (h // kp) * (w // kp)
    n_win, n_tok = (h // win) * (w // win), win * win + p
    a = dict(H=h, W=w, win=win, PE=pe, BANKS=banks)
    x = rng.integers(-512, 512, (b, h * w, c))
    pooled = rng.integers(-512, 512, (b, p, c))
    tag = f"{h}x{w}_{win}_{p}_{pe}_{banks}"
    cf = c // pe
    win_shape, map_shape = (n_win, n_tok, c), (h * w, c)

    at = rtlsim.window_rtl(f"atok_{tag}", "AttentionTokens", h, w, win, p, c, pe, 10, True, 10, banks)
    want = ops.op_attention_tokens(a, {}, x, pooled)[0].reshape(-1, c)
    free = _check(at, [x.reshape(-1, c), pooled.reshape(-1, c)], want)
    node = Node("AttentionTokens", "at", ["x", "p"], ["y"], attrs=a, dtype="INT10")
    cost = node_cost(node, {"x": map_shape, "p": (p, c), "y": win_shape})["cycles"]
    assert abs(_period(free, at, n_win * n_tok * cf) - cost) <= 0.05 * cost

    ctx = rng.integers(-512, 512, (b, n_win, n_tok, c))
    ctx[:, :, win * win:] = np.where(rng.random((b, n_win, p, c)) < 0.5, -512, 511)   # extreme window sums
    wr = rtlsim.window_rtl(f"wrev_{tag}", "WindowReverse", h, w, win, p, c, pe, 10, True, 10, banks)
    free = _check(wr, [ctx.reshape(-1, c)], ops.op_window_reverse(a, {}, ctx.reshape(-1, n_tok, c))[0].reshape(-1, c), seeds=(1,))
    node = Node("WindowReverse", "wr", ["x"], ["y"], attrs=a, dtype="INT10")
    cost = node_cost(node, {"x": win_shape, "y": map_shape})["cycles"]
    assert abs(_period(free, wr, h * w * cf) - cost) <= 0.05 * cost
    if int(np.sqrt(p)) ** 2 == p:
        ob = (512 * n_win).bit_length() + 1
        pu = rtlsim.window_rtl(f"pup_{tag}", "PooledUpsample", h, w, win, p, c, pe, 10, True, ob, banks)
        free = _check(pu, [ctx.reshape(-1, c)], ops.op_pooled_upsample(a, {}, ctx.reshape(-1, n_tok, c))[0].reshape(-1, c), seeds=(1,))
        node = Node("PooledUpsample", "pu", ["x"], ["y"], attrs=a, dtype=f"INT{ob}")
        cost = node_cost(node, {"x": win_shape, "y": map_shape})["cycles"]
        assert abs(_period(free, pu, h * w * cf) - cost) <= 0.05 * cost


def test_window_reverse_through_node_rtl():
    h, w, win, p, c = 4, 4, 2, 1, 4
    node = Node("WindowReverse", "wr_node", ["x"], ["y"], attrs=dict(H=h, W=w, win=win, PE=2), dtype="INT6")
    g = Graph([node], "x", "y", input_dtype="INT6")
    k = rtlsim.node_rtl(g, node, c, win * win + p)
    ctx = np.random.default_rng(0).integers(-32, 32, (2, 4, win * win + p, c))
    got = rtlsim.simulate(k, ctx.reshape(-1, c), seed=3, **GAPS)
    assert np.array_equal(got.out, ops.op_window_reverse(node.attrs, {}, ctx.reshape(-1, win * win + p, c))[0].reshape(-1, c))


# ---------------------------------------------------------------------- IntLayerNorm
@pytest.mark.parametrize("c,pe,eps,r_bits,shift,bits,signed,gm", [
    (128, 4, 85899, 37, 42, 10, True, (18000, 28000)),    # the shipped token norm's scale
    (16, 16, 0, 30, 36, 10, True, (-30000, 30000)),       # eps 0: isqrt(0) -> 1, perfect squares; fully parallel
    (6, 1, 5, 8, 1, 12, True, (-3, 4)),                   # shift 1: every odd sum is a rounding tie; PE = 1
    (9, 3, 100, 24, 28, 8, False, (1000, 3000)),          # unsigned input
    (8, 2, 3, 4, 2, 8, True, (-5, 6)),                    # R = 4: most roots above 2^R (inv = 0, clamped root)
])
def test_layernorm_rtl_equals_golden_and_cost(c, pe, eps, r_bits, shift, bits, signed, gm):
    from hw.kernels.attention import layernorm_int
    rng = np.random.default_rng(c + pe + shift)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    rows = 20
    x = rng.integers(lo, hi + 1, (rows, c))
    x[0] = lo                                              # constant rows: V = 0
    x[1] = 7
    x[2] = lo
    x[2, 0] = hi                                           # one outlier: |D| = isqrt(V) at its channel
    x[3] = np.where(np.arange(c) % 2, lo, hi)              # the largest variance
    x[4:8] = rng.integers(-2, 3, (4, c)).clip(lo, hi)      # tiny variances: isqrt(V + eps) dominated by eps
    amp = np.arange(1, 7)[:, None]                         # +-a alternating: V = C^3 a^2, a perfect square
    x[8:14] = np.where(np.arange(c) % 2, -amp if signed else 0, amp)
    gmul = rng.integers(gm[0], gm[1], c)
    brange = 1 << (shift + bits - 1)
    bias = rng.integers(-brange, brange, c)
    bias[0], bias[-1] = 4 * brange, -4 * brange            # two that always saturate
    node = Node("IntLayerNorm", f"ln_{c}_{pe}_{eps}_{r_bits}_{signed}", ["x"], ["y"],
                attrs=dict(eps=eps, r_bits=r_bits, shift=shift, bits=bits, PE=pe),
                params=dict(gmul=gmul, bias=bias), dtype=f"INT{bits}")
    g = Graph([node], "x", "y", input_dtype=f"{'INT' if signed else 'UINT'}{bits}")
    k = rtlsim.node_rtl(g, node, c)
    want = layernorm_int(x, gmul, bias, eps, r_bits, shift, bits)
    assert (want == hi if signed else want == (1 << (bits - 1)) - 1).any() and (want == -(1 << (bits - 1))).any()
    free = _check(k, [x], want, seeds=(1,) if c > 64 else (1, 2))
    predicted = node_cost(node, {"x": (rows, c), "y": (rows, c)})["cycles"] / rows
    assert abs(free.cycles_per_row - predicted) <= 0.05 * predicted, (free.cycles_per_row, predicted)


# ---------------------------------------------------------------------- QDAttention
@pytest.mark.parametrize("heads,c,n,pe,levels,table_kind", [
    (2, 8, 5, 1, 3, "small"),      # PE = 1; entries 0..3: many ties, some all-zero totals
    (4, 16, 6, 6, 3, "exp"),       # an exp table, all keys in parallel; equal scores tie at sigma = 1
    (1, 4, 2, 2, 3, "small"),      # two keys: equal scores tie at sigma = 2 (2 L E = 3 total)
    (2, 8, 4, 2, 1, "exp"),        # one level
])
def test_qd_attention_rtl_equals_golden_and_cost(heads, c, n, pe, levels, table_kind):
    from hw.kernels.attention import exp_table
    rng = np.random.default_rng(heads * 100 + n * 10 + pe)
    d = c // heads
    table = exp_table(d) if table_kind == "exp" else rng.integers(0, 4, 2 * d + 1)
    if table_kind == "small":
        table[0] = 0                                  # q = -k everywhere: total 0, every level counts
    wins = 4
    q, k, v = (rng.choice([-1, 1], (wins, n, c)) for _ in range(3))
    k[0] = k[0, 0]                                    # window 0: all keys equal -> all scores of a query equal
    q[0, 0] = -k[0, 0]
    q[0, 1] = k[0, 0]
    a = dict(heads=heads, levels=levels, PE=pe)
    want = ops.op_qd_attention(a, dict(table=table), q, k, v)[0].reshape(-1, c)
    ob = (levels * n).bit_length() + 1
    node = Node("QDAttention", f"qd_{heads}_{c}_{n}_{pe}_{levels}_{table_kind}", ["q", "k", "v"], ["y"], attrs=a,
                params=dict(table=table), dtype=f"INT{ob}")
    g = Graph([node], "q", "y", input_dtype="BIPOLAR")
    kern = rtlsim.node_rtl(g, node, c, n)
    bits = [((t.reshape(-1, c) + 1) // 2) for t in (q, k, v)]
    free = _check(kern, bits, want)
    shapes = {t: (wins, n, c) for t in ("q", "k", "v", "y")}
    per_window = node_cost(node, shapes)["cycles"] / wins
    assert abs(_period(free, kern, n * heads) - per_window) <= 0.05 * per_window
