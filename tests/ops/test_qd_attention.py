"""QDAttention (hw/ops/qd_attention.py) at every level: per window and head, scores q . k of
+-1 vectors (-d..d), numerators E = table[score + d], levels
#{sigma in 1..L : 2 L E_j >= (2 sigma - 1) sum_k E_k} (QD), or with thresholds of the node's own
#{sigma : den E_j >= (num1 + (sigma - 1) step) sum_k E_k} (BinaryViT's one level at A >= c/2),
context = levels @ v; n queries and m keys per window.

Reference: that definition in int64 numpy (einsum, no float), written here.  Each window is one
image of the harness (images = windows).  Edge cases: equal scores (all keys of a window equal),
the lowest and the highest score (q = -k, q = k), small tables with zero entries (ties, all-zero
totals: every level counts), two keys, one level, PE = 1 to all keys in parallel.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw import rtl
from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator, needs_yosys)


def ref_qd_attention(q, k, v, table, heads, levels, thresholds=None):
    """(windows, n, C) q and (windows, m, C) k, v of +-1 -> (windows, n, C) integer contexts;
    thresholds (num1, step, den), or QD's."""
    wins, n, c = q.shape
    d = c // heads
    qh, kh, vh = (t.reshape(wins, -1, heads, d).astype(np.int64) for t in (q, k, v))
    scores = np.einsum("wihx,wjhx->whij", qh, kh)                      # -d..d
    e = np.asarray(table, dtype=np.int64)[scores + d]
    total = e.sum(-1, keepdims=True)
    num1, step, den = thresholds or (1, 2, 2 * levels)
    lev = sum((den * e >= (num1 + sigma * step) * total).astype(np.int64) for sigma in range(levels))
    return np.einsum("whij,wjhx->wihx", lev, vh).reshape(wins, n, c)


def qd_case(name, q, k, v, table, heads, levels, pe=1, out_bits=None, thresholds=None):
    n = k.shape[1]
    ob = out_bits or (levels * n).bit_length() + 1
    attrs = dict(heads=heads, levels=levels, PE=pe)
    if thresholds:
        attrs.update(zip(("num1", "step", "den"), thresholds))
    return case("QDAttention", name, [q, k, v], ["BIPOLAR"] * 3, f"INT{ob}", attrs,
                dict(table=table), images=q.shape[0], want=ref_qd_attention(q, k, v, table, heads, levels, thresholds))


def qd(heads, c, n, pe, levels, table_kind, wins=4, m=None, thresholds=None):
    from hw.kernels.attention import exp_table
    rng = np.random.default_rng(heads * 100 + n * 10 + pe)
    d, m = c // heads, m or n
    table = exp_table(d) if table_kind == "exp" else rng.integers(0, 4, 2 * d + 1)
    if table_kind == "small":
        table[0] = 0                                  # q = -k everywhere: total 0, every level counts
    q = rng.choice([-1, 1], (wins, n, c))
    k, v = (rng.choice([-1, 1], (wins, m, c)) for _ in range(2))
    k[0] = k[0, 0]                                    # window 0: all keys equal -> all scores of a query equal
    q[0, 0] = -k[0, 0]                                # (score -d: E = table[0])
    q[0, 1] = k[0, 0]                                 # (score d: E = table[2d])
    return qd_case(f"qd_{heads}_{c}_{n}_{m}_{pe}_{levels}_{table_kind}{'_t' if thresholds else ''}", q, k, v, table,
                   heads, levels, pe, thresholds=thresholds)


CASES = {
    # PE = 1; entries 0..3: many ties, some all-zero totals
    "pe1_small_table": lambda: qd(2, 8, 5, 1, 3, "small"),
    # an exp table, all keys in parallel; equal scores tie at sigma = 1
    "exp_all_keys": lambda: qd(4, 16, 6, 6, 3, "exp"),
    # two keys: equal scores tie at sigma = 2 (2 L E = 3 total)
    "two_keys": lambda: qd(1, 4, 2, 2, 3, "small"),
    # one level
    "one_level": lambda: qd(2, 8, 4, 2, 1, "exp"),
    # fewer keys than queries (keys from pooled tokens): 6 queries meet 2 keys
    "fewer_keys": lambda: qd(2, 8, 6, 2, 3, "exp", m=2),
    # BinaryViT's quantiser: one level at A >= c / 2 (c = 0.3: 2^16 E >= 9830 total), 8 queries, 4 keys
    "binaryvit_threshold": lambda: qd(1, 8, 8, 2, 1, "exp", m=4, thresholds=(9830, 0, 1 << 16)),
    # a threshold that every key of a window reaches on a tie (num1 / den = 1 / m: equal keys)
    "threshold_ties": lambda: qd(2, 8, 5, 1, 2, "small", m=4, thresholds=(1, 1, 4)),
    # 192 channels per head: a popcount tree the kernel registers twice (QDAttention.popcount_cut)
    "wide_head": lambda: qd(1, 192, 3, 1, 2, "small", wins=2),
}


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


def drawn_case(name, seed, wins, n, m, heads, dh, levels, small_table, pe=1):
    from hw.kernels.attention import exp_table
    r = np.random.default_rng(seed)
    c = heads * dh
    q, k, v = (r.choice([-1, 1], size=(wins, s, c)) for s in (n, m, m))
    table = r.integers(0, 4, 2 * dh + 1) if small_table else exp_table(dh, 16)
    return qd_case(name, q, k, v, table, heads, levels, pe, out_bits=max(8, (levels * m).bit_length() + 1))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6),
       st.sampled_from([1, 2, 4]), st.integers(1, 9), st.integers(1, 4), st.booleans())
def test_drawn_sizes_golden_torch_onnx(seed, wins, n, m, heads, dh, levels, small_table):
    """n queries and m keys per window (n != m included)."""
    c = drawn_case("qd", seed, wins, n, m, heads, dh, levels, small_table)
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
    io = c.io()
    _, free = check_rtl(c)
    # first input word to first output word: the window's load, both passes of the first (query,
    # head), and the pipeline behind the last step (the popcount stages, E, DEN E, levels, context)
    n, m, pe, d = io.ins[0].shape[-2], io.ins[1].shape[-2], c.op.pe, io.out.width // c.node.attrs["heads"]
    assert free.latency == max(n, m) + 2 * (m // pe) - 1 + c.op.rtl_latency(io)
    assert c.op.rtl_latency(io) == 4 + rtl.popcount_stages(d, c.op.popcount_cut) == 4 + 1 + (name == "wide_head")


@pytest.mark.golden
@needs_gxx
@needs_verilator()
@drawn(2)
@given(st.data())
def test_drawn_sizes_and_foldings_csim_rtl(data):
    heads = data.draw(st.sampled_from([1, 2, 4]), "heads")
    dh = data.draw(st.integers(1, 6), "head dim")
    n = data.draw(st.integers(1, 6), "queries")
    m = data.draw(st.integers(1, 6), "keys")
    pe = data.draw(st.sampled_from(divisors(m)), "PE")
    levels = data.draw(st.integers(1, 3), "levels")
    small = data.draw(st.booleans(), "small table")
    c = drawn_case(f"qd_drawn_{heads}_{dh}_{n}_{m}_{pe}_{levels}_{int(small)}",
                   heads * 1000 + dh * 100 + n * 10 + levels, 2, n, m, heads, dh, levels, small, pe)
    check_csim(c)
    check_rtl(c, seeds=(1,))


def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    q = np.ones((1, 17, 128), dtype=np.int64)
    c = case("QDAttention", "qd", [q, q, q], ["BIPOLAR"] * 3, "INT7", dict(heads=4, levels=3, PE=4),
             dict(table=np.ones(65)))
    with pytest.raises(FoldingError, match=r"qd: PE=4 does not divide 17; legal values: \[1, 17\]"):
        c.op.hls(c.io())
    with pytest.raises(FoldingError, match=r"qd: PE=4 does not divide 17"):
        c.op.rtl(c.io())


@pytest.mark.golden
@needs_yosys()
@pytest.mark.parametrize("name, dsps", [("pe1_small_table", 0), ("binaryvit_threshold", 1)])
def test_yosys_constant_products_are_shifts_and_adds_unless_long(name, dsps):
    """DEN x E and the level thresholds num x total are constant products: QD's (6; 1, 3, 5) are shifts
    and adds in fabric (hw.rtl.const_product_sv), BinaryViT's 9,830 (a 16-bit constant) stays a DSP48;
    the cost model counts what Yosys maps."""
    from hw import yosys
    c = CASES[name]()
    k = c.op.rtl(c.io())
    assert yosys.synth_counts(k.source, k.module)["DSP"] == c.op.cost(c.io())["dsps"] == dsps


def test_signed_digits_rebuild_every_constant_and_have_no_neighbours():
    for k in range(4096):
        d = rtl.signed_digits(k)
        assert sum(s << t for s, t in d) == k
        shifts = sorted(t for _, t in d)
        assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:]))
    assert rtl.const_product_sv(6, "x", "W") == "(W'(x) << 3) - (W'(x) << 1)"
    assert rtl.const_product_sv(9830, "x", "W") == "W'(9830) * W'(x)"
