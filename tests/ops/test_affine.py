"""Affine (hw/ops/affine.py) at every level: y = sat_bits(round(sum_i (x_i * m_i[c]) << l_i + bias, shift)),
a popcount input (pc_k = K) first turned into the +-1 dot product 2 x - K, one rounding (half up) and
saturation; the bias per channel (C,) or per token and channel (T, C), its row cycling with the token.

Reference: Python integers (floor((acc + 2^(s-1)) / 2^s), acc * 2^-s for s <= 0, then clipped).  Edge
cases: both ends of the input format, positive / zero / negative right shifts, saturation at both ends
of the output, rounding ties, a multiplier of 1 on every channel (no table, no product in RTL),
per-token bias rows, tables large enough for block RAM (hw.ops.fixed_point.fixed_tables, TABLE_BRAM),
PE = 1 to fully parallel; Yosys counts of the tables' placement and the DSPs.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.ops import fixed_point
from tests.ops.harness import (case, check_csim, check_golden, check_onnx, check_rtl, check_torch, divisors, drawn,
                                needs_gxx, needs_verilator, needs_yosys)


def requant(acc, shift: int, bits: int) -> np.ndarray:
    """Round half up once (floor((acc + 2^(s-1)) / 2^s); acc * 2^-s for s <= 0) and saturate, in Python integers."""
    acc = np.asarray(acc, dtype=object)
    y = acc * 2 ** -shift if shift <= 0 else (acc + 2 ** (shift - 1)) // 2 ** shift
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.array([min(max(int(v), lo), hi) for v in y.reshape(-1)], dtype=np.int64).reshape(y.shape)


def reference(xs, ms, lshifts, pc_k, bias, shift, bits) -> np.ndarray:
    acc = np.asarray(bias, dtype=object)
    for x, m, l, k in zip(xs, ms, lshifts, pc_k):
        x = np.asarray(x, dtype=object)
        if k:
            x = 2 * x - k                  # popcount of matches -> +-1 dot product
        acc = acc + x * np.asarray(m, dtype=object) * 2 ** l
    return requant(acc, shift, bits)


def affine(name, xs, in_dtypes, ms, bias, shift, bits, pe, lshifts=None, pc_k=None, images=1, table_bram=None):
    """An Affine node reading ``xs`` (token streams (images, T, C)) with multipliers ``ms``."""
    n = len(xs)
    lshifts, pc_k = list(lshifts or [0] * n), list(pc_k or [0] * n)
    attrs = dict(lshifts=lshifts, shift=shift, bits=bits, pc_k=pc_k, PE=pe)
    if table_bram is not None:
        attrs[fixed_point.TABLE_BRAM] = table_bram
    params = {f"m{i}": np.asarray(m) for i, m in enumerate(ms)}
    params["bias"] = np.asarray(bias)
    return case("Affine", name, xs, in_dtypes, f"INT{bits}", attrs, params, images=images,
                want=reference(xs, ms, lshifts, pc_k, bias, shift, bits))


def two_inputs(name, shift, bits, pe):
    """A signed stream (INT10, << 2) and an MVAU popcount (UINT6, K = 32: 2 x - 32), 12 channels,
    per-token bias rows (T = 5 tokens, 2 images: the row cycles with the token), multipliers of
    +-3000 and biases of +-10^6: heavy saturation at both ends."""
    rng = np.random.default_rng(shift + 10 * bits)
    c, rows, tokens = 12, 10, 5
    x0 = rng.integers(-512, 512, (rows, c))
    x1 = rng.integers(0, 33, (rows, c))
    x0[0], x0[1] = -512, 511                              # both ends of the input format
    m0, m1 = rng.integers(-3000, 3000, c), rng.integers(-3000, 3000, c)
    bias = rng.integers(-10 ** 6, 10 ** 6, (tokens, c))
    return affine(name, [x0.reshape(2, tokens, c), x1.reshape(2, tokens, c)], ["INT10", "UINT6"], [m0, m1], bias,
                  shift, bits, pe, lshifts=[2, 0], pc_k=[0, 32], images=2)


def five_terms(name, pe):
    """Four multiplied inputs (a popcount among them, left shifts up to 5) and a unit term, as the
    attention's context sums: more products than one stage of the RTL kernel adds
    (hw.ops.fixed_point.FixedPoint.dsp_chain), so it adds them over several stages, the later
    inputs held for theirs."""
    rng = np.random.default_rng(5 * pe)
    c, rows, tokens = 8, 12, 3
    xs = [rng.integers(-512, 512, (rows, c)), rng.integers(0, 65, (rows, c)), rng.integers(-2048, 2048, (rows, c)),
          rng.integers(-128, 128, (rows, c)), rng.integers(-512, 512, (rows, c))]
    xs[0][0], xs[2][1] = -512, 2047                       # ends of the input formats
    ms = [rng.integers(-3000, 3000, c) for _ in range(4)] + [np.ones(c, dtype=np.int64)]
    bias = rng.integers(-10 ** 6, 10 ** 6, (tokens, c))
    return affine(name, [x.reshape(4, tokens, c) for x in xs], ["INT10", "UINT7", "INT12", "INT8", "INT10"], ms, bias,
                  9, 12, pe, lshifts=[5, 0, 1, 3, 2], pc_k=[0, 64, 0, 0, 0], images=4)


def ties(name):
    """m = 1 on every channel (a unit term: no table and no product in RTL), no bias, shift 2: every
    x = 4 j + 2 is a tie, rounded half up (-6 -> -1, -2 -> 0, 2 -> 1, 6 -> 2)."""
    x = np.arange(-32, 32).reshape(1, 16, 4)
    return affine(name, [x], ["INT7"], [np.ones(4, dtype=np.int64)], np.zeros(4, dtype=np.int64), 2, 8, 2)


def block_ram(name, c, pe, tokens, table_bram=None):
    """Table groups of FIXED_TABLE_BRAM_BITS or more are block-RAM ROMs: 256 channels x (12-bit
    multiplier + 21-bit bias) in one "tab" (tokens = 1); 4 bias rows x 128 channels in "btab" beside
    a LUT "tab" (tokens = 4, 2 images)."""
    rng = np.random.default_rng(c + tokens)
    images = 1 if tokens == 1 else 2
    rows = 3 if tokens == 1 else images * tokens
    x = rng.integers(-512, 512, (rows, c))
    m0, bias = rng.integers(-2000, 2000, c), rng.integers(-10 ** 6, 10 ** 6, (tokens, c))
    return affine(name, [x.reshape(images, -1, c)], ["INT10"], [m0], bias, 8, 10, pe, images=images,
                  table_bram=table_bram)


def streamlined_shortcut(name, pe):
    """The shipped blocks' ``*.pre`` Affine after Affine.lower: alpha x popcount (MVAU, K = 64, << 2)
    plus the shortcut, whose multiplier 2**14 on every channel the pass made a unit term << 14."""
    from hw.graph import Graph
    from hw.ops.affine import Affine
    rng = np.random.default_rng(14 + pe)
    c, tokens = 16, 6
    x0, x1 = rng.integers(0, 65, (2, tokens, c)), rng.integers(-512, 512, (2, tokens, c))
    x1[0, 0], x1[0, 1] = -512, 511
    before = affine(name, [x0, x1], ["UINT7", "INT10"], [rng.integers(8000, 32000, c), np.full(c, 1 << 14)],
                    rng.integers(-10 ** 6, 10 ** 6, c), 8, 16, pe, lshifts=[2, 0], pc_k=[64, 0], images=2)
    n = Affine.lower(Graph([before.node], "x0", "y")).nodes[0]
    assert n.attrs["lshifts"] == [2, 14] and np.all(n.params["m1"] == 1)
    before.node = n
    return before


CASES = {
    "streamlined_shortcut_pe4": lambda: streamlined_shortcut("aff_pow2_4", 4),
    "two_inputs_shift6_pe4": lambda: two_inputs("aff_6_10_4", 6, 10, 4),              # positive shift
    "two_inputs_shift0_4bit_pe1": lambda: two_inputs("aff_0_4_1", 0, 4, 1),          # no rounding, 4-bit output
    "two_inputs_shift-2_parallel": lambda: two_inputs("aff_m2_10_12", -2, 10, 12),   # negative shift: << 2
    "ties_half_up": lambda: ties("aff_ties"),
    "five_terms_pe2": lambda: five_terms("aff_five_2", 2),
    "five_terms_parallel": lambda: five_terms("aff_five_8", 8),
    "tab_in_block_ram": lambda: block_ram("aff_bram_256_1", 256, 1, 1),
    "token_bias_in_block_ram": lambda: block_ram("aff_bram_128_4", 128, 2, 4),
}
SATURATING = ["two_inputs_shift6_pe4", "two_inputs_shift0_4bit_pe1", "two_inputs_shift-2_parallel"]


@pytest.mark.parametrize("name", CASES)
def test_golden_torch_onnx(name):
    c = CASES[name]()
    check_golden(c)
    check_torch(c)
    check_onnx(c)


@pytest.mark.parametrize("name", SATURATING)
def test_saturation_is_exercised(name):
    c = CASES[name]()
    y, bits = check_golden(c), c.node.attrs["bits"]
    assert y.min() == -(1 << (bits - 1)) and y.max() == (1 << (bits - 1)) - 1


def test_ties_round_half_up():
    c = CASES["ties_half_up"]()
    x, y = c.xs[0], check_golden(c)
    tie = x % 4 == 2
    assert tie.sum() == 16 and np.array_equal(y[tie], (x[tie] + 2) >> 2)


@pytest.mark.parametrize("name,c,pe,tokens", [("tab_in_block_ram", 256, 1, 1),
                                              ("token_bias_in_block_ram", 128, 2, 4)])
def test_large_tables_are_block_ram_unless_table_bram_is_0(name, c, pe, tokens):
    """The cost model's placement (fixed_tables) is the RTL's ('rom_style = "block"'); TABLE_BRAM = 0
    keeps the same tables in LUTs."""
    styles = [style for *_, style in fixed_point.fixed_tables([12], 21, c, pe, tokens)]
    assert "block" in styles and (tokens == 1 or styles == ["logic", "block"])
    case_ = CASES[name]()
    io = case_.io()
    assert 'rom_style = "block"' in case_.op.rtl(io).source
    assert case_.op.cost(io)["bram36"] > 0
    in_luts = block_ram(name + "_luts", c, pe, tokens, table_bram=0)
    assert [st_ for *_, st_ in fixed_point.fixed_tables([12], 21, c, pe, tokens, bram=False)] == ["logic"] * len(styles)
    assert 'rom_style = "block"' not in in_luts.op.rtl(io).source
    cost = in_luts.op.cost(io)
    assert cost["bram36"] == 0 and cost["luts"] > case_.op.cost(io)["luts"]
    assert np.array_equal(check_golden(in_luts), check_golden(case_))


def test_varying_bits_count_the_columns_synthesis_keeps():
    from hw.resources import varying_bits
    assert varying_bits(np.full(256, 16384)) == 0                 # a per-tensor scale: no column varies
    assert varying_bits([6410, 17581, 9000]) <= 15                # always positive: the sign bit is constant
    assert varying_bits([-1, 0]) == 2 and varying_bits([4, 5]) == 1     # at the 4-bit width 5 needs signed
    assert varying_bits(np.arange(-4, 4)) == 3


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 3), st.integers(1, 9), st.integers(2, 16), st.integers(-3, 20),
       st.booleans())
def test_drawn_sizes_golden_torch_onnx(seed, terms, channels, bits, shift, token_bias):
    """16-bit inputs and multipliers, 31-bit biases, left shifts up to 7, popcount inputs (K = 40)."""
    r = np.random.default_rng(seed)
    pc_k = [int(r.integers(0, 2)) * 40 for _ in range(terms)]
    xs = [r.integers(0, 41, (2, 3, channels)) if k else r.integers(-(1 << 15), 1 << 15, (2, 3, channels))
          for k in pc_k]
    ms = [r.integers(-(1 << 15), 1 << 15, channels) for _ in range(terms)]
    bias = r.integers(-(1 << 30), 1 << 30, (3, channels) if token_bias else channels)
    c = affine("aff", xs, ["UINT6" if k else "INT16" for k in pc_k], ms, bias, shift, bits, 1,
               lshifts=[int(v) for v in r.integers(0, 8, terms)], pc_k=pc_k, images=2)
    y = check_golden(c)
    assert y.min() >= -(1 << (bits - 1)) and y.max() <= (1 << (bits - 1)) - 1
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
    _, free = check_rtl(c)
    # first input word to first output word: the multiply-add stages (dsp_chain products each, at
    # least one stage) and the rounding one
    products = sum(not np.all(np.asarray(v) == 1) for k, v in c.node.params.items() if k != "bias")
    assert free.latency == c.op.rtl_latency() == 1 + max(1, -(-products // c.op.dsp_chain))


@pytest.mark.golden
@needs_gxx
@needs_verilator()
@drawn(2)
@given(st.data())
def test_drawn_sizes_and_foldings_csim_rtl(data):
    c = data.draw(st.integers(2, 16), "channels")
    pe = data.draw(st.sampled_from(divisors(c)), "PE")
    terms = data.draw(st.integers(1, 4), "terms")
    pc_k = [data.draw(st.sampled_from([0, 0, 16, 33]), f"pc_k{i}") for i in range(terms)]
    in_bits = [data.draw(st.integers(2, 12), f"in_bits{i}") for i in range(terms)]
    lshifts = [data.draw(st.integers(0, 3), f"lshift{i}") for i in range(terms)]
    shift = data.draw(st.integers(-2, 14), "shift")
    bits = data.draw(st.integers(2, 12), "bits")
    tokens = data.draw(st.integers(1, 4), "tokens")
    token_bias = data.draw(st.booleans(), "token bias")
    r = np.random.default_rng(c * 1000 + pe * 100 + shift)
    xs = [r.integers(0, k + 1, (2, tokens, c)) if k else r.integers(-(1 << (b - 1)), 1 << (b - 1), (2, tokens, c))
          for k, b in zip(pc_k, in_bits)]
    dtypes = [f"UINT{k.bit_length()}" if k else f"INT{b}" for k, b in zip(pc_k, in_bits)]
    ms = [r.integers(-3000, 3000, c) for _ in range(terms)]
    bias = r.integers(-10 ** 5, 10 ** 5, (tokens, c) if token_bias else c)
    tag = "_".join(f"{d}l{l}" for d, l in zip(dtypes, lshifts))
    case_ = affine(f"aff_drawn_{c}_{pe}_{tag}_{shift}_{bits}_{tokens}{'t' if token_bias else 'c'}", xs, dtypes, ms,
                   bias, shift, bits, pe, lshifts=lshifts, pc_k=pc_k, images=2)
    check_csim(case_)
    check_rtl(case_, seeds=(1,))


@pytest.mark.golden
@needs_gxx
def test_exact_width_tables_of_synthesis_give_the_same_results(monkeypatch):
    """Under synthesis the constant tables are ap_int of their exact width (not the C integers g++
    builds with): the kernel built that way equals golden too."""
    from hw import csim
    monkeypatch.setattr(csim, "CXXFLAGS", [*csim.CXXFLAGS, "-DBHVIT_EXACT_TABLES"])
    rng = np.random.default_rng(5)
    xs = rng.integers(-512, 512, (1, 6, 8))
    m, b = rng.integers(-3000, 3000, 8), rng.integers(-9000, 9000, 8)
    m[0], b[0] = -3000, -9000                        # 13- and 15-bit tables
    code = check_csim(affine("exact_affine", [xs], ["INT10"], [m], b, 5, 10, 2))
    assert "BHVIT_SWORD(13, int16_t)" in code.code and "BHVIT_SWORD(15, int16_t)" in code.code
    assert "impl=lutram" in code.code


# ---------------------------------------------------------------------- synthesis
@pytest.mark.golden
@needs_yosys()
def test_yosys_counts_small_affine():
    from hw import yosys
    rng = np.random.default_rng(3)
    m0 = rng.integers(-3000, 3000, 4)
    c = affine("affine_synth", [np.zeros((1, 2, 4))], ["INT8"], [m0], rng.integers(-1000, 1000, 4), 6, 8, 2)
    k = c.op.rtl(c.io())
    counts = yosys.synth_counts(k.source, k.module)
    assert counts["DSP"] > 0 or counts["LUT"] > 0
    assert counts["FF"] > 0 and counts["BRAM"] == 0


@pytest.mark.golden
@needs_yosys()
def test_yosys_affine_tables_block_ram_or_luts_as_the_cost_model_says(monkeypatch):
    """256 channels x (12 + 21) bits of tables: one RAMB18 in Yosys and in the cost model, and about
    60 LUTs; the same tables kept in LUTs (a larger FIXED_TABLE_BRAM_BITS) take over twice that."""
    from hw import yosys
    rng = np.random.default_rng(9)
    m0, bias = rng.integers(-2000, 2000, 256), rng.integers(-10 ** 6, 10 ** 6, 256)
    counts = {}
    for style, limit in (("block", fixed_point.FIXED_TABLE_BRAM_BITS), ("logic", 10 ** 6)):
        monkeypatch.setattr(fixed_point, "FIXED_TABLE_BRAM_BITS", limit)
        c = affine(f"affine_tab_{style}", [np.zeros((1, 1, 256))], ["INT10"], [m0], bias, 8, 10, 1)
        k = c.op.rtl(c.io())
        counts[style] = yosys.synth_counts(k.source, k.module)
        assert counts[style]["BRAM"] == c.op.cost(c.io())["bram36"] == (0.5 if style == "block" else 0)
    assert counts["block"]["LUT"] < 100 and counts["logic"]["LUT"] > 2 * counts["block"]["LUT"]


@pytest.mark.golden
@needs_yosys()
def test_yosys_affine_term_with_unit_multiplier_takes_no_dsp():
    """The fused shift unit's term enters its Affine with m = 1 on every channel: added as is (the
    cost model counts no DSP for it), where per-channel multipliers take a DSP48 per lane."""
    from hw import yosys
    rng = np.random.default_rng(5)
    m0 = rng.integers(-3000, 3000, 4)
    counts, cost = {}, {}
    for kind, m1 in (("unit", np.ones(4, np.int64)), ("any", rng.integers(-3000, 3000, 4))):
        c = affine(f"affine_{kind}", [np.zeros((1, 3, 4))] * 2, ["INT10", "INT28"], [m0, m1],
                   rng.integers(-1000, 1000, 4), 6, 10, 2)
        k = c.op.rtl(c.io())
        counts[kind] = yosys.synth_counts(k.source, k.module)["DSP"]
        cost[kind] = c.op.cost(c.io())["dsps"]
    assert counts["unit"] == 2 and counts["any"] >= 4
    assert cost == {"unit": 2, "any": 4}


# ---------------------------------------------------------------------- the streamlining pass
def pow2_graph(rng):
    """Three Affines in a chain, their terms' multipliers: per channel; 2**14 on every channel;
    1 (a unit term already); -2**3 on every channel (not a shift: negative); 6 on every channel (not
    a power of two); 2**5 on every channel on a popcount input (pc_k)."""
    from hw.graph import Graph, Node
    c = 8
    a = lambda name, ins, ms, lsh, pc_k, shift, bits: Node(   # noqa: E731
        "Affine", name, ins, [name], dict(lshifts=lsh, shift=shift, bits=bits, pc_k=pc_k),
        {**{f"m{i}": np.asarray(m, dtype=np.int64) for i, m in enumerate(ms)},
         "bias": rng.integers(-10 ** 3, 10 ** 3, c)}, f"INT{bits}")
    nodes = [a("a", ["x"], [rng.integers(-3000, 3000, c)], [0], [0], 6, 10),
             a("b", ["a", "x"], [np.full(c, 1 << 14), np.ones(c)], [1, 0], [0, 0], 14, 12),
             a("d", ["b", "a", "x"], [np.full(c, -8), np.full(c, 6), np.full(c, 32)], [0, 2, 1], [0, 0, 7], 4, 10)]
    return Graph(nodes, "x", "d", input_dtype="UINT4")


def test_power_of_two_multipliers_become_shifts_with_the_same_integers():
    """Affine.lower: a term with one power of two 2**k on every channel becomes the unit term << l + k,
    nothing else changes; every stream equals the original graph's on random inputs (both ends of the
    input format among them), and the input graph is left as it was."""
    import copy

    from hw.execute import run
    from hw.ops.affine import Affine
    rng = np.random.default_rng(0)
    g = pow2_graph(rng)
    before = copy.deepcopy(g.nodes)
    low = Affine.lower(g)
    assert [n.attrs["lshifts"] for n in low.nodes] == [[0], [15, 0], [0, 2, 6]]
    assert np.all(low.node("b").params["m0"] == 1) and np.all(low.node("d").params["m2"] == 1)
    assert np.all(low.node("d").params["m0"] == -8) and np.all(low.node("d").params["m1"] == 6)
    assert np.array_equal(low.node("a").params["m0"], g.node("a").params["m0"])
    x = rng.integers(0, 16, (50, 3, 8))
    x[0], x[1] = 0, 15
    t_g, t_low = {}, {}
    assert np.array_equal(run(low, x, t_low), run(g, x, t_g))
    assert all(np.array_equal(t_low[k], t_g[k]) for k in ("a", "b", "d"))
    assert all(len(np.unique(t_g[k])) > 50 for k in "abd")          # the inputs exercise the terms
    for n0, n1 in zip(before, g.nodes):
        assert n0.attrs == n1.attrs and all(np.array_equal(n0.params[k], n1.params[k]) for k in n0.params)


def test_streamlining_saves_a_dsp_per_lane_of_each_power_of_two_term(shipped_net):
    """On the shipped network the pass (in hw.passes.lower) turns the shortcut, residual and context
    terms with 2**14 on every channel into shifts: the cost model's DSPs fall by one per lane for each."""
    from hw.cost import graph_cost
    from hw.ops.affine import Affine
    from hw.ops.shift_conv import ShiftConv
    fused = ShiftConv.lower(shipped_net.graph)
    low = Affine.lower(fused)
    shifted = [(n.name, i) for n0, n in zip(fused.nodes, low.nodes) if n.op == "Affine"
               for i in range(len(n.inputs)) if not np.all(n0.params[f"m{i}"] == 1) and np.all(n.params[f"m{i}"] == 1)]
    assert len(shifted) >= 30
    dsps = [graph_cost(x, (32, 32, 1))["dsps"] for x in (fused, low)]
    assert dsps[0] - dsps[1] == len(shifted)              # PE = 1 everywhere: one DSP per term


# ---------------------------------------------------------------------- errors
def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    from hw.ops import FoldingError
    c = two_inputs("aff", 6, 10, 5)
    with pytest.raises(FoldingError, match=r"aff: PE=5 does not divide 12; legal values: \[1, 2, 3, 4, 6, 12\]"):
        c.op.hls(c.io())
    with pytest.raises(FoldingError, match="aff: PE=5 does not divide 12"):
        c.op.rtl(c.io())


def test_negative_left_shift_too_wide_accumulator_and_one_bit_output_are_rejected():
    x = np.zeros((1, 2, 4), dtype=np.int64)
    c = affine("aff_neg", [x], ["INT8"], [np.ones(4)], np.zeros(4), 2, 8, 1, lshifts=[-1])
    with pytest.raises(ValueError, match=r"aff_neg: negative left shift \[-1\]"):
        c.op.hls(c.io(c.want))
    c = affine("aff_wide", [x], ["INT32"], [np.full(4, 1 << 20)], np.zeros(4), 0, 8, 1, lshifts=[10])
    with pytest.raises(ValueError, match="aff_wide: accumulator of .* bits exceeds the 62"):
        c.op.hls(c.io())
    c = affine("aff_1bit", [x], ["INT8"], [np.full(4, 3)], np.zeros(4), 0, 2, 1)
    c.node.attrs["bits"] = 1
    with pytest.raises(ValueError, match="aff_1bit: 1 output bits"):
        c.op.rtl(c.io())
