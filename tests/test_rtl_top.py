"""The stitched RTL top (hw/rtl_top.py): gearboxes, forks, FIFOs and the nodes' modules,
cycle-accurate in Verilator under random input gaps and output back-pressure, against
the golden model."""
import numpy as np
import pytest

from hw import rtl, rtl_top, rtlsim
from hw.execute import run
from hw.graph import Graph, Node
from hw.ops import op_of
from tests.test_hls_top import _affine


@pytest.mark.parametrize("in_pe,out_pe,ib,ob,signed", [
    (1, 4, 5, 5, True), (4, 1, 5, 5, True), (2, 8, 4, 7, True), (8, 2, 3, 3, False), (1, 1, 10, 11, True),
    (4, 4, 6, 9, False)])
def test_refold_keeps_every_value(in_pe, out_pe, ib, ob, signed):
    c = 8
    lo, hi = (-(1 << (ib - 1)), (1 << (ib - 1)) - 1) if signed else (0, (1 << ib) - 1)
    x = np.random.default_rng(in_pe * 10 + out_pe).integers(lo, hi + 1, (13, c))
    x[0], x[1] = lo, hi
    k = rtl.refold_rtl(f"rf_{in_pe}_{out_pe}_{ib}_{ob}_{int(signed)}", c, ib, ob, signed, in_pe, out_pe)
    for seed, gap, stall in ((0, 0.0, 0.0), (1, 0.3, 0.4)):
        res = rtlsim.simulate(k, x, seed=seed, p_gap=gap, p_stall=stall)
        assert np.array_equal(res.out, x)
    free = rtlsim.simulate(k, x)
    assert free.cycles_per_row == pytest.approx(c / min(in_pe, out_pe), rel=0.05)   # one word per cycle


def rtl_graph(pe=(2, 4, 2, 2, 1, 4, 8, 8)):
    """4x4 tokens of 4 channels -> affine -> sign -> XNOR MVAU, a channel repeat shortcut of the
    affine, their affine join, a GELU-like table on it, a second join, the token sum."""
    rng = np.random.default_rng(3)
    c, mh = 4, 8
    table = np.clip(np.arange(-512, 512) // 3, -128, 127)
    return Graph([
        _affine("a", ["image"], c, 10, rng, pe=pe[0]),
        Node("Thresholding", "t", ["a"], ["t"], dict(PE=pe[1]), dict(thresholds=rng.integers(-100, 100, (c, 1))),
             "BIPOLAR"),
        Node("MVAU", "m", ["t"], ["m"], dict(MW=c, MH=mh, SIMD=pe[2], PE=pe[3]),
             dict(weights=rng.choice([-1, 1], (c, mh))), "UINT3"),
        Node("RepeatChannels", "rep", ["a"], ["rep"], dict(ratio=2, PE=pe[4]), {}, "INT10"),
        _affine("u", ["m", "rep"], mh, 10, rng, pc_k=[c, 0], pe=pe[5]),
        Node("Lut", "g", ["u"], ["g"], dict(in_bits=10, PE=pe[6]), dict(table=table), "INT8"),
        _affine("o", ["u", "g"], mh, 10, rng, pe=pe[7]),
        Node("TokenSum", "ts", ["o"], ["ts"], dict(PE=pe[7]), {}, "INT15"),
    ], "image", "ts", classes=mh)


@pytest.mark.parametrize("pe", [(1,) * 8, (2, 4, 2, 2, 1, 4, 8, 8), (4, 4, 4, 8, 4, 8, 2, 4)])
def test_rtl_top_equals_golden_under_back_pressure(pe):
    g = rtl_graph(pe)
    images = np.random.default_rng(7).integers(0, 256, (4, 16, 4))
    want = run(g, images)
    top = rtl_top.rtl_top(g, (16, 4), "small_rtl")
    x = images.reshape(-1, 4)
    for seed, gap, stall in ((0, 0.0, 0.0), (2, 0.3, 0.4)):
        res = rtlsim.simulate(top, x, seed=seed, p_gap=gap, p_stall=stall)
        assert np.array_equal(res.out, want), (seed, gap, stall)
    # free-running, the whole design's steady state is its bottleneck node's cycles per image
    from hw.cost import graph_cost
    more = np.random.default_rng(8).integers(0, 256, (10, 16, 4))
    res = rtlsim.simulate(top, more.reshape(-1, 4))
    assert np.array_equal(res.out, run(g, more))
    assert res.cycles_per_row == pytest.approx(graph_cost(g, (16, 4))["cycles_per_image"], rel=0.05)
    # every FIFO reports its occupancy: empty at the end, never above its depth, used at all
    assert len(res.fifos) == top.source.count("bhvit_fifo #(.WIDTH")
    assert all(now == 0 and 0 < mx <= depth for now, mx, depth in res.fifos.values())


def test_a_stuck_top_is_reported_as_a_deadlock_with_its_fifos():
    """The output never ready: the run stops with the FIFOs that hold words, it does not hang."""
    g = rtl_graph()
    top = rtl_top.rtl_top(g, (16, 4), "small_rtl")
    images = np.random.default_rng(9).integers(0, 256, (3, 16, 4))
    with pytest.raises(rtlsim.RtlDeadlock, match=r"deadlock.*FIFOs holding words \(occupancy/depth\): .*ts \d+/\d+"):
        rtlsim.simulate(top, images.reshape(-1, 4), p_stall=1.0, idle=500)


def _ready_rhs(source: str) -> list:
    """The right-hand sides of a kernel's ``assign inN_tready = ...`` lines."""
    import re
    return re.findall(r"assign\s+in\d+_tready\s*=\s*([^;]+);", source)


def test_ready_registered_kernels_take_no_ready_from_their_output(shipped_pynq_graph):
    """direct_links lets a ready path stop at the kernels whose op is ready_registered: their
    input ready must come from registers, never from out_tready (directly or through en / fire)."""
    import re
    g = shipped_pynq_graph
    d = rtl_top.rtl_design(g, (32, 32, 1), "ready", max_chain=0)
    ops = {n.name: n.op for n in g.nodes}
    registered = {n.name for n in g.nodes if op_of(n).ready_registered}
    seen = set()
    for k in d.nodes:
        rhs = _ready_rhs(k.source)
        assert rhs, k.name
        combinational = any(re.search(r"\b(en|fire|out_tready|out_tvalid)\b", r) for r in rhs)
        if k.name in registered:
            assert not combinational, (k.name, rhs)
            seen.add(ops[k.name])
        elif ops[k.name] in ("Affine", "Thresholding", "MVAU"):
            assert combinational, (k.name, rhs)       # the check can tell the two kinds apart
    # every ready_registered op the shipped model has (all but ShiftBranch, which the fused
    # shift unit replaces) was looked at
    assert {"XnorConv2d", "IntConv2d", "ShiftConv", "TokenPool", "AttentionTokens", "WindowReverse",
            "PooledUpsample", "RepeatChannels", "IntLayerNorm"} <= seen


def _chain_lengths(d, registered) -> dict:
    """For every process, the most processes a ready path passes through into its input ready
    (through direct links only), computed independently of direct_links."""
    chan = {c.var: c for c in d.channels}
    reader = {v: p for p in d.processes for v in p.ins}
    memo = {}

    def passes(p):
        return p.kind in ("fanout", "refold") or (p.kind == "node" and p.params["code"].name not in registered)

    def into(p):
        if id(p) not in memo:
            outs = [reader[v] for v in p.outs if chan[v].depth == 0 and v in reader]
            memo[id(p)] = (1 + max([into(q) for q in outs], default=0)) if passes(p) else 0
        return memo[id(p)]
    return {id(p): into(p) for p in d.processes if p.kind not in ("axis_in", "axis_out")}, reader, chan


@pytest.mark.parametrize("max_chain", [1, 2, 4])
def test_direct_links_keep_ready_paths_short_and_the_fifos_that_matter(max_chain, shipped_pynq_graph):
    g = shipped_pynq_graph
    full = rtl_top.rtl_design(g, (32, 32, 1), "links", max_chain=0)
    d = rtl_top.rtl_design(g, (32, 32, 1), "links", max_chain=max_chain)
    before = {c.label: c.depth for c in full.channels}
    linked = {c.label for c in d.channels if c.depth == 0}
    assert linked, "no channel became a wire"
    # only two-word FIFOs become wires; every other depth is untouched
    assert all(before[lb] == 2 for lb in linked)
    assert all(c.depth == before[c.label] for c in d.channels if c.label not in linked)
    # the top's ports keep their FIFOs, and so do the inputs of matrix units reading in bursts
    bursty = {n.name for n in g.nodes if op_of(n).reads_in_bursts()}
    assert bursty
    registered = {n.name for n in g.nodes if op_of(n).ready_registered}
    lengths, reader, chan = _chain_lengths(d, registered)
    for p in d.processes:
        for v in p.ins:
            if chan[v].depth == 0:
                assert p.kind != "axis_out"
                assert not (p.kind == "node" and p.params["code"].name in bursty), v
        if p.kind == "axis_in":
            assert all(chan[v].depth > 0 for v in p.outs)
    # a writer on a direct link sees a ready path through at most max_chain processes
    for p in d.processes:
        for v in p.outs:
            if chan[v].depth == 0:
                assert lengths[id(reader[v])] + 1 <= max_chain, (chan[v].label, lengths[id(reader[v])])
    # and a longer chain allows more links
    if max_chain > 1:
        fewer = rtl_top.rtl_design(g, (32, 32, 1), "links", max_chain=max_chain - 1)
        assert sum(c.depth == 0 for c in fewer.channels) < len(linked)


def test_the_stage2_attention_keeps_the_cost_models_period(shipped_net):
    """The shipped stage-2 attention (map -> tokens -> LayerNorm -> q / k / v units -> QD attention
    -> context) at a 5,000-cycle folding, as its own RTL top: the logits of the slice equal the
    golden model's and images leave at the cost model's period.  With one LayerNorm FSM per token
    (read, root, output in turn) and two-word FIFOs in front of QD attention (which loads a window,
    then scores it without reading) the slice took 5,955 cycles per image where the model said
    4,352."""
    from hw.cost import fold_for_target, graph_cost
    from hw.passes import lower
    g = lower(shipped_net.graph)
    fold_for_target(g, (32, 32, 1), 5000)
    names = [n.name for n in g.nodes]
    nodes = g.nodes[names.index("stages.2.0.norm1"):names.index("stages.2.0.mixer.attention.context_act") + 1]
    assert {"IntLayerNorm", "QDAttention", "AttentionTokens", "MVAU"} <= {n.op for n in nodes}
    # the slice reads the map the stage-1 downsampling writes; the top's AXI input takes unsigned
    # values, so the slice is fed 8-bit ones (the integers through it are still the golden model's)
    sub = Graph(nodes, "downsamples.1.act", nodes[-1].outputs[0], input_dtype="UINT8")
    shape = (16, 128)
    images = np.random.default_rng(3).integers(0, 256, (5, *shape))
    top = rtl_top.rtl_top(sub, shape, "stage2_attention")
    res = rtlsim.simulate(top, images.reshape(-1, shape[-1]), idle=100_000)
    assert np.array_equal(res.out, run(sub, images).reshape(res.out.shape))
    words = res.out_cycles.size // len(images)
    intervals = np.diff(res.out_cycles[words - 1::words])
    period = graph_cost(sub, shape)["cycles_per_image"]
    assert period == 4352
    assert intervals[1:].max() <= period * 1.01, intervals


def test_attention_tokens_read_the_map_before_they_wait(shipped_pynq_graph):
    """AttentionTokens reads all of a map into its bank before it wants the pooled tokens, which
    the pools write only after that map: neither input waits an image, so neither FIFO holds one
    (the delay model gave the map's an image and a row: 1.5 BRAM36 per attention stage)."""
    g = shipped_pynq_graph
    d = rtl_top.rtl_design(g, (32, 32, 1), "tokens")
    chan = {c.var: c for c in d.channels}
    tokens = [p for p in d.processes if p.kind == "node" and op_of(g.node(p.params["code"].name)).reads_inputs_in_order]
    assert len(tokens) == 2
    for p in tokens:
        for v in p.ins:
            assert chan[v].depth < chan[v].words_per_image, (p.comment, chan[v].label, chan[v].depth)
