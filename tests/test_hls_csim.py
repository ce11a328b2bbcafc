"""HLS C simulation (g++ + ap_types) of the binary kernels against their golden models.

Each case compiles the kernel template of templates/hls/ for one size and
folding (about 2.5 s; cached by source hash) and compares the streamed output
with hw.kernels.binary, np.array_equal.
"""
import numpy as np
import pytest

from hw import csim
from hw.kernels.binary import threshold, xnor_popcount_dot

MVAU_CASES = [
    (32, 128, 32, 4),      # the shipped model's first MLP layer, its folding
    (9, 6, 3, 2),          # odd sizes
    (5, 3, 1, 1),          # PE = SIMD = 1
    (16, 8, 16, 8),        # fully parallel
    (64, 4, 8, 1),
]


@pytest.mark.parametrize("mw,mh,simd,pe", MVAU_CASES)
def test_mvau_xnor_csim_equals_golden(mw, mh, simd, pe):
    rng = np.random.default_rng(mw * 1000 + mh * 10 + pe)
    x = rng.integers(0, 2, (11, mw))
    w = rng.integers(0, 2, (mh, mw))
    x[0] = w[0]                      # a full match: popcount MW (the widest output)
    x[1] = 1 - w[0]                  # no match: popcount 0
    got = csim.mvau_xnor(x, w, simd, pe, name=f"mvau_{mw}x{mh}")
    want = (xnor_popcount_dot(x.astype(bool), w.astype(bool)) + mw) // 2
    assert np.array_equal(got, want)
    assert got[0, 0] == mw and got[1, 0] == 0


@pytest.mark.parametrize("c,pe,bits", [(12, 4, 10), (7, 7, 4), (5, 1, 16)])
def test_threshold_csim_equals_golden(c, pe, bits):
    rng = np.random.default_rng(c * 100 + pe)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (9, c))
    t = rng.integers(lo - 50, hi + 50, c)          # includes always-on / always-off channels
    t[0] = lo - 1000
    t[-1] = hi + 1000
    x[0] = t.clip(lo, hi)                          # x == t: sign(0) = +1
    x[1, :] = lo
    x[2, :] = hi
    got = csim.threshold_sign(x, t, bits, pe, name=f"thr_{c}")
    want = (threshold(x, t) + 1) // 2              # bit 1 <-> +1
    assert np.array_equal(got, want)


def test_folding_that_does_not_divide_is_rejected_with_legal_values():
    with pytest.raises(csim.FoldingError, match=r"fc1: SIMD=5 does not divide 32; legal values: \[1, 2, 4, 8, 16, 32\]"):
        csim.mvau_xnor(np.zeros((1, 32)), np.zeros((4, 32)), simd=5, pe=1, name="fc1")
    with pytest.raises(csim.FoldingError, match="PE=3"):
        csim.threshold_sign(np.zeros((1, 8)), np.zeros(8), 8, pe=3)


def test_missing_headers_are_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("XILINX_HLS", str(tmp_path))
    monkeypatch.setattr(csim, "ROOT", tmp_path)
    with pytest.raises(csim.CsimError, match="make setup"):
        csim.ap_types_dir()


def test_shipped_mlp_layers_in_csim_equal_the_golden_streams(shipped_net, shipped):
    """The shipped model's first MLP (sign -> MVAU, twice) with its real thresholds,
    weights and folding, fed the golden input streams of 4 test images."""
    from qonnx.core.datatype import DataType

    from hw.graph import run
    g = shipped_net.graph
    images = shipped[2].images[:4].numpy().transpose(0, 2, 3, 1)
    trace: dict = {}
    run(g, images, trace)
    for layer in ("stages.0.0.mlp.fc1", "stages.0.0.mlp.fc2"):
        sign = next(n for n in g.nodes if n.name == f"{layer}.sign")
        mvau = next(n for n in g.nodes if n.name == f"{layer}.linear")
        x = trace[sign.inputs[0]]
        bits = DataType[g.dtype_of(sign.inputs[0])].bitwidth()
        c = x.shape[-1]
        got_bits = csim.threshold_sign(x.reshape(-1, c), sign.params["thresholds"][:, 0], bits,
                                       sign.attrs["PE"], name=sign.name)
        want_sign = trace[sign.outputs[0]].reshape(-1, c)
        assert np.array_equal(2 * got_bits - 1, want_sign)
        w = mvau.params["weights"]                               # (MW, MH) +-1
        got = csim.mvau_xnor(got_bits, (w.T + 1) // 2, mvau.attrs["SIMD"], mvau.attrs["PE"], name=mvau.name)
        want = trace[mvau.outputs[0]]
        assert np.array_equal(got, want.reshape(got.shape))


# ---------------------------------------------------------------------- fixed-point nodes
@pytest.mark.parametrize("shift,bits,pe", [(6, 10, 4), (0, 4, 1), (-2, 10, 12)])
def test_affine_csim_equals_golden(shift, bits, pe):
    """Two inputs (a signed stream and an MVAU popcount turned into a +-1 sum), a left
    shift, per-token bias rows, negative and zero right shifts, heavy saturation."""
    from hw.kernels.fixed import affine_sum
    rng = np.random.default_rng(shift + 10 * bits)
    c, rows, tokens = 12, 10, 5
    x0 = rng.integers(-512, 512, (rows, c))
    x1 = rng.integers(0, 33, (rows, c))
    x0[0] = -512
    x0[1] = 511
    m0, m1 = rng.integers(-3000, 3000, c), rng.integers(-3000, 3000, c)
    bias = rng.integers(-10 ** 6, 10 ** 6, (tokens, c))
    got = csim.fixed_node("affine", [x0, x1], [10, 6], [True, False], {"m0": m0, "m1": m1}, bias, shift, bits,
                          pe=pe, lshifts=[2, 0], pc_k=[0, 32], name=f"affine_{shift}_{bits}_{pe}")
    want = affine_sum([(x0, m0, 2), (2 * x1 - 32, m1, 0)], np.tile(bias, (rows // tokens, 1)), shift, bits)
    assert np.array_equal(got, want)
    assert got.min() == -(1 << (bits - 1)) and got.max() == (1 << (bits - 1)) - 1   # saturation was exercised


@pytest.mark.parametrize("pe", [1, 3])
def test_rprelu_csim_equals_golden(pe):
    from hw.kernels.fixed import rprelu
    rng = np.random.default_rng(pe)
    c, rows = 6, 40
    z = rng.integers(-512, 512, (rows, c))
    z[0] = 0
    z[1] = -1
    m_pos, m_neg = np.full(c, 256), rng.integers(-300, 300, c)
    bias = rng.integers(-20000, 20000, c)
    got = csim.fixed_node("rprelu", [z], [10], [True], {"m_pos": m_pos, "m_neg": m_neg}, bias, 8, 10, pe=pe,
                          name=f"rprelu_{pe}")
    assert np.array_equal(got, rprelu(z, m_pos, m_neg, bias, 8, 10))


def test_shipped_affine_and_rprelu_nodes_in_csim_equal_the_golden_streams(shipped_net, shipped):
    """The Affine after the first MLP's second MVAU (popcount input, residual input) and
    the RPReLU after its first, with their real constants (PE from the folding where the
    graph has one, else 4), on 2 test images."""
    from qonnx.core.datatype import DataType

    from hw.graph import run
    g = shipped_net.graph
    images = shipped[2].images[:2].numpy().transpose(0, 2, 3, 1)
    trace: dict = {}
    run(g, images, trace)
    producers = {o: n for n in g.nodes for o in n.outputs}
    fc2 = next(n for n in g.nodes if n.name == "stages.0.0.mlp.fc2.linear")
    affine = next(n for n in g.nodes if n.op == "Affine" and fc2.outputs[0] in n.inputs)
    rp = next(n for n in g.nodes if n.op == "RPReLU" and producers[n.inputs[0]].op == "Affine")
    for node in (affine, rp):
        xs = [trace[i] for i in node.inputs]
        c = xs[0].shape[-1]
        dts = [DataType[g.dtype_of(i)] for i in node.inputs]
        kind = "affine" if node.op == "Affine" else "rprelu"
        mults = ({f"m{i}": node.params[f"m{i}"] for i in range(len(xs))} if kind == "affine"
                 else {"m_pos": node.params["m_pos"], "m_neg": node.params["m_neg"]})
        bias = node.params["bias"].reshape(-1, c)          # one row, or one per token (position embeddings)
        got = csim.fixed_node(kind, [x.reshape(-1, c) for x in xs], [d.bitwidth() for d in dts],
                              [d.signed() for d in dts], mults, bias, node.attrs["shift"], node.attrs["bits"],
                              pe=node.attrs.get("PE", 4), lshifts=node.attrs.get("lshifts"), pc_k=node.attrs.get("pc_k"),
                              name=node.name)
        assert np.array_equal(got, trace[node.outputs[0]].reshape(got.shape)), node.name


def test_every_node_of_the_shipped_graph_in_csim_equals_golden(shipped_pynq_graph, shipped):
    """Every node of the shipped hardware graph (all 168: every op type has a kernel) with the folding
    `make hls BOARD=pynq-z2` chooses, compiled into one testbench (one translation unit per
    node, a few minutes of g++ on 2 cores), each fed the golden input streams of 8 test
    images: every output equals golden."""
    g = shipped_pynq_graph
    assert any(int(n.attrs.get("PE", 1)) > 1 for n in g.nodes)       # folded, not all PE = 1
    assert {n.op for n in g.nodes} <= set(csim.SUPPORTED)
    images = shipped[2].images[:8].numpy().transpose(0, 2, 3, 1)
    res = csim.check_graph_nodes(g, images)
    assert len(res) == len(g.nodes) == 168
    assert all(res.values()), [k for k, v in res.items() if not v][:5]


def test_unsupported_node_is_named(shipped_net):
    from hw.graph import Node
    node = Node("Duplicate", "fork", ["x"], ["y", "z"])
    with pytest.raises(NotImplementedError, match="fork: no HLS kernel for Duplicate"):
        csim.node_code(shipped_net.graph, node, 128)


# ---------------------------------------------------------------------- data-movement kernels
@pytest.mark.parametrize("kind,axis,reach,pe,hw_", [("box", "h", 1, 2, (5, 7)), ("box", "w", 2, 8, (5, 7)),
                                                     ("box", "h", 2, 1, (3, 2)), ("mix", "h", 1, 2, (5, 7)),
                                                     ("mix", "h", 2, 1, (3, 4))])
def test_shift_unit_csim_equals_golden(kind, axis, reach, pe, hw_):
    """Circular box sums (reach up to the map size: wrap-around on both sides) and channel mixes."""
    from hw.kernels.shift import box_sum, channel_mix
    h, w = hw_
    c = 8
    x = np.random.default_rng(reach * 10 + pe).integers(-512, 512, (2, h, w, c))
    m = x.transpose(0, 3, 1, 2)
    out_bits = 13 if kind == "box" else 10
    code = csim.token_code(f"shift_{kind}_{axis}{reach}_{pe}_{h}x{w}", "ShiftBranch",
                           dict(kind=kind, axis=axis, reach=reach, H=h, W=w), c, pe, 10, True, out_bits, True)
    got = csim.simulate(code, x.reshape(-1, c))
    want = box_sum(m, reach, 2 if axis == "h" else 3) if kind == "box" else channel_mix(m, reach)
    assert np.array_equal(got, want.transpose(0, 2, 3, 1).reshape(-1, c))


@pytest.mark.parametrize("pe,hw_,signed", [(2, (4, 5), True), (1, (2, 2), True), (8, (3, 1), False)])
def test_fused_shift_unit_csim_equals_golden(pe, hw_, signed):
    """The 9-tap circular cross convolution (maps of 1 to 5 rows: the taps wrap once or more),
    the extreme coefficients and inputs at the output width's bound."""
    from hw.graph import dtype_max_abs, sint
    from hw.kernels.shift import cross_conv
    h, w = hw_
    c = 8
    rng = np.random.default_rng(pe * 100 + h)
    lo, hi = (-512, 512) if signed else (0, 1024)
    x = rng.integers(lo, hi, (2, h, w, c))
    coef = rng.integers(-(1 << 17), 1 << 17, (c, 9))
    coef[0] = (1 << 17) - 1                         # every tap at the largest coefficient
    x[0, ..., 0] = hi - 1
    out_bits = int(sint(max(abs(lo), hi - 1) * int(np.abs(coef).sum(axis=1).max()))[3:])
    code = csim.shift_conv_code(f"shift_conv_{pe}_{h}x{w}_{int(signed)}", coef, h, w, c, pe, 10,
                                signed, out_bits)
    got = csim.simulate(code, x.reshape(-1, c))
    want = cross_conv(x.transpose(0, 3, 1, 2), coef).transpose(0, 2, 3, 1).reshape(-1, c)
    assert np.array_equal(got, want)
    assert np.abs(want).max() > dtype_max_abs(f"INT{out_bits - 1}")      # the widest value is reached


@pytest.mark.parametrize("ratio,pe", [(3, 4), (2, 1), (4, 8)])
def test_repeat_and_group_sum_channels_csim_equal_golden(ratio, pe):
    from hw.kernels.tokens import group_sum_channels, repeat_channels
    c = 8
    x = np.random.default_rng(ratio).integers(-512, 512, (6, c))
    rep = csim.token_code(f"rep{ratio}_{pe}", "RepeatChannels", dict(ratio=ratio), c * ratio, pe, 10, True, 10, True)
    assert np.array_equal(csim.simulate(rep, x), repeat_channels(x, ratio))
    if (c // ratio) % pe == 0 and c % ratio == 0:
        gs = csim.token_code(f"gsum{ratio}_{pe}", "GroupSumChannels", dict(ratio=ratio), c // ratio, pe, 10, True,
                             13, True)
        assert np.array_equal(csim.simulate(gs, x), group_sum_channels(x, ratio))


@pytest.mark.parametrize("h,w,c,o,g,k,s,p,d,pe", [
    (6, 5, 8, 8, 4, 3, 1, 1, 1, 2),      # MSGDC branch, odd map
    (6, 6, 8, 8, 4, 3, 1, 3, 3, 1),      # dilation 3: most taps of the border pixels are padding
    (7, 7, 8, 8, 4, 3, 1, 5, 5, 8),      # dilation 5 > half the map, fully parallel outputs
    (8, 8, 8, 16, 1, 2, 2, 0, 1, 4),     # 2x2 patch merging, stride 2
])
def test_xnor_conv_csim_equals_golden(h, w, c, o, g, k, s, p, d, pe):
    from hw.kernels.binary import binary_conv2d
    rng = np.random.default_rng(h * w + d)
    x = rng.choice([-1, 1], (2, h, w, c))
    wt = rng.choice([-1, 1], (o, c // g, k, k))
    code = csim.xnor_conv_code(f"xconv_{h}x{w}_k{k}d{d}g{g}s{s}_{pe}", wt, h, w, s, p, d, g, pe, 8)
    got = csim.simulate(code, x.reshape(-1, c))
    want = binary_conv2d(x.transpose(0, 3, 1, 2).astype(np.int8), wt.astype(np.int8), s, p, d, g)
    assert np.array_equal(got, want.transpose(0, 2, 3, 1).reshape(-1, o))


@pytest.mark.parametrize("mode,k,pe", [("max", 2, 2), ("sum", 2, 8), ("max", 3, 1)])
def test_token_pool_csim_equals_golden(mode, k, pe):
    from hw.kernels.tokens import max_pool, sum_pool
    h, w, c = 6, 3 * k if k == 3 else 4, 8
    x = np.random.default_rng(k + pe).integers(-512, 512, (2, h, w, c))
    x[0, :k, :k, 0] = -512                                # a block of minima: max must not start at 0
    code = csim.token_code(f"pool_{mode}{k}_{pe}", "TokenPool", dict(H=h, W=w, k=k, mode=mode), c, pe, 10, True,
                           14, True)
    got = csim.simulate(code, x.reshape(-1, c))
    want = (max_pool if mode == "max" else sum_pool)(x.transpose(0, 3, 1, 2), k)
    assert np.array_equal(got, want.transpose(0, 2, 3, 1).reshape(-1, c))


def test_token_sum_and_lut_csim_equal_golden():
    from hw.kernels.fixed import lut
    rng = np.random.default_rng(7)
    x = rng.integers(-512, 512, (3, 10, 8))
    ts = csim.token_code("tsum", "TokenSum", {}, 8, 4, 10, True, 16, True, tokens_in=10)
    assert np.array_equal(csim.simulate(ts, x.reshape(-1, 8)), x.sum(1))
    table = rng.integers(-3000, 3000, 1024)
    flat = x.reshape(-1, 8)
    flat[0, :2] = (-512, 511)                            # both ends of the table
    assert np.array_equal(csim.simulate(csim.lut_code("gelu", table, 10, 8, 2, 13), flat), lut(flat, table, 10))


# ---------------------------------------------------------------------- stem, classifier, attention
@pytest.mark.parametrize("h,w,cin,o,k,s,simd,pe", [
    (8, 8, 1, 8, 2, 2, 1, 1),         # the stem's shape (k = stride), PE = SIMD = 1
    (6, 10, 2, 4, 2, 2, 2, 2),
    (7, 9, 3, 6, 3, 2, 27, 6),        # stride < kernel (overlapping taps), odd map, fully parallel
    (5, 6, 3, 4, 3, 1, 9, 2),         # stride 1
])
def test_int_conv_csim_equals_golden(h, w, cin, o, k, s, simd, pe):
    from hw.kernels.fixed import int_conv2d
    rng = np.random.default_rng(h * w + k)
    x = rng.integers(0, 256, (2, h, w, cin))
    wt = rng.integers(-128, 128, (o, cin, k, k))
    x[0] = 255                                         # the extreme sums: all-255 image with ...
    wt[0], wt[-1] = -128, 127                          # ... all-minimum and all-maximum kernels
    bound = int(np.abs(wt).reshape(o, -1).sum(1).max()) * 255
    code = csim.int_conv_code(f"iconv_{h}x{w}_{cin}_{k}s{s}_{simd}_{pe}", wt, h, w, s, simd, pe,
                              bound.bit_length() + 1)
    got = csim.simulate(code, x.reshape(-1, cin))
    want = int_conv2d(x.transpose(0, 3, 1, 2), wt, stride=s).transpose(0, 2, 3, 1).reshape(-1, o)
    assert np.array_equal(got, want)
    assert got.min() == -128 * 255 * cin * k * k and got.max() == 127 * 255 * cin * k * k


@pytest.mark.parametrize("kk,n,simd,pe,bits,signed", [(8, 6, 1, 1, 13, True), (16, 10, 16, 10, 13, True),
                                                      (12, 4, 3, 2, 8, False)])
def test_int_linear_csim_equals_golden(kk, n, simd, pe, bits, signed):
    from hw.kernels.fixed import int_matmul
    rng = np.random.default_rng(kk * n + pe)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi + 1, (5, kk))
    wt = rng.integers(-128, 128, (n, kk))
    bias = rng.integers(-10 ** 5, 10 ** 5, n)
    x[0], x[1] = lo, hi
    wt[0] = -128
    bound = int(np.abs(wt).sum(1).max()) * max(-lo, hi) + int(np.abs(bias).max())
    code = csim.int_linear_code(f"ilin_{kk}x{n}_{simd}_{pe}_{bits}{signed}", wt, bias, bits, signed, simd, pe,
                                bound.bit_length() + 1)
    assert np.array_equal(csim.simulate(code, x), int_matmul(x, wt) + bias)


@pytest.mark.parametrize("c,pe,eps,r_bits,shift,bits,signed,gm", [
    (128, 4, 85899, 37, 42, 10, True, (18000, 28000)),    # the shipped token norm's scale
    (16, 16, 0, 30, 36, 10, True, (-30000, 30000)),       # eps 0: isqrt(0) -> 1, perfect squares (below)
    (6, 1, 5, 8, 1, 12, True, (-3, 4)),                   # shift 1: every odd sum is a rounding tie
    (9, 3, 100, 24, 28, 8, False, (1000, 3000)),          # unsigned input
])
def test_layernorm_csim_equals_golden(c, pe, eps, r_bits, shift, bits, signed, gm):
    from hw.kernels.attention import layernorm_int
    rng = np.random.default_rng(c + pe + shift)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi + 1, (40, c))
    x[0] = lo                                              # constant rows: V = 0
    x[1] = 7
    x[2] = lo
    x[2, 0] = hi                                           # one outlier: |D| = isqrt(V) at its channel
    x[3] = np.where(np.arange(c) % 2, lo, hi)              # the largest variance
    x[4:10] = rng.integers(-2, 3, (6, c)).clip(lo, hi)     # tiny variances: isqrt(V + eps) dominated by eps
    amp = np.arange(1, 7)[:, None]                         # +-a alternating: V = C^3 a^2, a perfect square
    x[10:16] = np.where(np.arange(c) % 2, -amp if signed else 0, amp)   # when C is one (16) and eps = 0
    gmul = rng.integers(gm[0], gm[1], c)
    brange = 1 << (shift + bits - 1)                       # biases of the output's range ...
    bias = rng.integers(-brange, brange, c)
    bias[0], bias[-1] = 4 * brange, -4 * brange            # ... and two that always saturate
    code = csim.layernorm_code(f"ln_{c}_{pe}_{eps}_{shift}_{signed}", gmul, bias, eps, r_bits, shift, bits, signed,
                               bits, pe)
    got = csim.simulate(code, x)
    want = layernorm_int(x, gmul, bias, eps, r_bits, shift, bits)
    assert np.array_equal(got, want)
    assert (got == (1 << (bits - 1)) - 1).any() and (got == -(1 << (bits - 1))).any()   # saturation exercised


@pytest.mark.parametrize("heads,c,n,pe,levels,table_kind", [
    (2, 8, 5, 1, 3, "small"),      # PE = 1; entries 0..3: many ties, some all-zero totals
    (4, 16, 6, 6, 3, "exp"),       # an exp table, all keys in parallel; equal scores tie at sigma = 1
    (1, 4, 2, 2, 3, "small"),      # two keys: equal scores tie at sigma = 2 (2 L E = 3 total)
    (2, 8, 4, 2, 1, "exp"),        # one level
])
def test_qd_attention_csim_equals_golden(heads, c, n, pe, levels, table_kind):
    from hw import ops
    from hw.kernels.attention import exp_table
    rng = np.random.default_rng(heads * 100 + n * 10 + pe)
    d = c // heads
    table = exp_table(d) if table_kind == "exp" else rng.integers(0, 4, 2 * d + 1)
    if table_kind == "small":
        table[0] = 0                                  # q = -k everywhere: total 0, every level counts
    wins = 4
    q, k, v = (rng.choice([-1, 1], (wins, n, c)) for _ in range(3))
    k[0] = k[0, 0]                                    # window 0: all keys equal -> all scores of a query equal
    q[0, 0] = -k[0, 0]                                # (score -d: E = table[0])
    q[0, 1] = k[0, 0]                                 # (score d: E = table[2d])
    want = ops.op_qd_attention(dict(heads=heads, levels=levels), dict(table=table), q, k, v)[0]
    ob = (levels * n).bit_length() + 1
    code = csim.qd_attention_code(f"qd_{heads}_{c}_{n}_{pe}_{levels}_{table_kind}", table, heads, levels, c, n, pe,
                                  ob)
    got = csim.simulate(code, *(t.reshape(-1, c) for t in (q, k, v)))
    assert np.array_equal(got, want.reshape(-1, c))


@pytest.mark.parametrize("h,w,win,kp,pe", [
    (4, 4, 4, 4, 1),     # stage 2 of the shipped model: one window, one pooled token
    (4, 6, 2, 2, 4),     # 2 x 3 windows, 6 pooled tokens (not a square: no PooledUpsample)
    (6, 6, 3, 2, 8),     # 4 windows, 3 x 3 pooled tokens upsampled by 2, fully parallel
    (4, 4, 2, 4, 2),     # 4 windows, one pooled token upsampled by 4
])
def test_window_kernels_csim_equal_golden(h, w, win, kp, pe):
    """AttentionTokens (map + pooled tokens -> windows), then WindowReverse and
    PooledUpsample of a context stream of the same layout."""
    from hw import ops
    rng = np.random.default_rng(h * w + win + pe)
    c, b = 8, 2
    p = (h // kp) * (w // kp)
    a = dict(H=h, W=w, win=win)
    x = rng.integers(-512, 512, (b, h * w, c))
    pooled = rng.integers(-512, 512, (b, p, c))
    tag = f"{h}x{w}_{win}_{p}_{pe}"
    at = csim.window_code(f"atok_{tag}", "AttentionTokens", h, w, win, p, c, pe, 10, True, 10)
    got = csim.simulate(at, x.reshape(-1, c), pooled.reshape(-1, c))
    want = ops.op_attention_tokens(a, {}, x, pooled)[0]
    assert np.array_equal(got, want.reshape(-1, c))
    ctx = rng.integers(-512, 512, want.shape)
    ctx[:, win * win:] = np.where(rng.random((ctx.shape[0], p, c)) < 0.5, -512, 511)   # extreme window sums
    wr = csim.window_code(f"wrev_{tag}", "WindowReverse", h, w, win, p, c, pe, 10, True, 10)
    assert np.array_equal(csim.simulate(wr, ctx.reshape(-1, c)), ops.op_window_reverse(a, {}, ctx)[0].reshape(-1, c))
    if int(np.sqrt(p)) ** 2 == p:
        n_win = (h // win) * (w // win)
        ob = (512 * n_win).bit_length() + 1
        pu = csim.window_code(f"pup_{tag}", "PooledUpsample", h, w, win, p, c, pe, 10, True, ob)
        want = ops.op_pooled_upsample(a, {}, ctx)[0]
        assert np.array_equal(csim.simulate(pu, ctx.reshape(-1, c)), want.reshape(-1, c))


def test_inconsistent_input_rows_and_bad_foldings_are_reported():
    code = csim.window_code("atok_4x6_2_6_4", "AttentionTokens", 4, 6, 2, 6, 8, 4, 10, True, 10)
    x, pooled = np.zeros((2 * 24, 8)), np.zeros((2 * 6 - 1, 8))
    with pytest.raises(csim.CsimError, match="input 1 must have 6 rows per 24 rows of input 0"):
        csim.simulate(code, x, pooled)
    with pytest.raises(csim.FoldingError, match=r"qd: PE=4 does not divide 17; legal values: \[1, 17\]"):
        csim.qd_attention_code("qd", np.ones(65), 4, 3, 128, 17, 4, 7)
    with pytest.raises(csim.FoldingError, match="fc: SIMD=3 does not divide 256"):
        csim.int_linear_code("fc", np.ones((10, 256)), np.zeros(10), 13, True, 3, 1, 25)
    with pytest.raises(csim.FoldingError, match="ln: PE=5 does not divide 128"):
        csim.layernorm_code("ln", np.ones(128), np.zeros(128), 1, 30, 30, 10, True, 10, 5)


def test_exact_width_tables_of_synthesis_give_the_same_results(monkeypatch):
    """Under synthesis the constant tables are ap_int / ap_uint of their exact width (not
    the C integers g++ builds with): kernels built that way equal golden too."""
    from hw.kernels.binary import xnor_popcount_dot
    from hw.kernels.fixed import affine_sum
    monkeypatch.setattr(csim, "CXXFLAGS", [*csim.CXXFLAGS, "-DBHVIT_EXACT_TABLES"])
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, (6, 12))
    w = rng.integers(0, 2, (8, 12))
    code = csim.bind_storage(csim.mvau_code("exact_mvau", w, 4, 2))
    assert "BHVIT_UWORD(4, uint64_t)" in code.code and "impl=lutram" in code.code
    assert np.array_equal(csim.simulate(code, x), (xnor_popcount_dot(x.astype(bool), w.astype(bool)) + 12) // 2)
    t = rng.integers(-600, 600, 8)
    xs = rng.integers(-512, 512, (6, 8))
    assert np.array_equal(csim.threshold_sign(xs, t, 10, 4, name="exact_thr"), (threshold(xs, t) + 1) // 2)
    m, b = rng.integers(-3000, 3000, 8), rng.integers(-9000, 9000, 8)
    got = csim.fixed_node("affine", [xs], [10], [True], {"m0": m}, b, 5, 10, 2, name="exact_affine")
    assert np.array_equal(got, affine_sum([(xs, m, 0)], b, 5, 10))
    from hw.kernels.fixed import int_matmul
    wt, bias = rng.integers(-128, 128, (4, 8)), rng.integers(-10 ** 5, 10 ** 5, 4)
    code = csim.int_linear_code("exact_ilin", wt, bias, 10, True, 4, 2, 24)
    assert "BHVIT_SWORD(8, int8_t)" in code.code
    assert np.array_equal(csim.simulate(code, xs), int_matmul(xs, wt) + bias)
