"""Property tests: every kernel, two implementations, random sizes and values.

For each op of the dataflow graph, hypothesis draws shapes (odd sizes
included), constants and inputs; the numpy golden semantics (hw.ops, built on
hw.kernels) and the PyTorch hardware-exact form (hw.qat.TorchIntNet, written
separately with torch conv / roll / reshape) must give identical integers.
Border cases are forced where they matter: the zero-padded taps of dilated
convolutions, circular shifts that wrap (maps smaller than the reach), x == t
at a threshold (sign(0) = +1), saturation at both ends of a format.
(The integer LayerNorm and QD attention call the same int64 kernels in both
forms, so their tests check the plumbing; tests/test_golden_kernels.py ties
those kernels to float references.)
"""
from types import SimpleNamespace

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw.graph import Graph, Node
from hw.ops import execute
from hw.qat import TorchIntNet

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def both(node: Node, *inputs, fmt=None):
    """(numpy golden output, torch output) of one node on the same inputs."""
    gold = execute(node, [np.asarray(x, dtype=np.int64) for x in inputs])[0]
    net = SimpleNamespace(graph=Graph([node], node.inputs[0], node.outputs[0]), fmt=fmt or {})
    tnet = TorchIntNet(net)
    with torch.no_grad():
        got = getattr(tnet, "op_" + node.op)(node, *[torch.tensor(np.asarray(x), dtype=torch.float64)
                                                     for x in inputs])
    got = got.numpy()
    assert np.array_equal(got, np.rint(got)), f"{node.op}: torch form is not integer"
    return gold, got.astype(np.int64)


def rng_of(seed):
    return np.random.default_rng(seed)


seeds = st.integers(0, 2 ** 32 - 1)


@SETTINGS
@given(seeds, st.integers(1, 3), st.integers(1, 9), st.integers(2, 16), st.integers(-3, 20))
def test_affine(seed, terms, channels, bits, shift):
    r = rng_of(seed)
    xs = [r.integers(-(1 << 15), 1 << 15, size=(2, 3, channels)) for _ in range(terms)]
    params = {f"m{i}": r.integers(-(1 << 15), 1 << 15, size=channels) for i in range(terms)}
    params["bias"] = r.integers(-(1 << 30), 1 << 30, size=channels)
    pc_k = [int(r.integers(0, 2)) * 40 for _ in range(terms)]
    node = Node("Affine", "a", [f"x{i}" for i in range(terms)], ["y"],
                dict(lshifts=[int(v) for v in r.integers(0, 8, size=terms)], shift=shift, bits=bits, pc_k=pc_k),
                params, f"INT{bits}")
    gold, got = both(node, *xs)
    assert np.array_equal(gold, got)
    assert gold.min() >= -(1 << (bits - 1)) and gold.max() <= (1 << (bits - 1)) - 1


@SETTINGS
@given(seeds, st.integers(1, 9), st.integers(2, 16), st.integers(0, 24))
def test_rprelu(seed, channels, bits, m):
    r = rng_of(seed)
    z = r.integers(-(1 << 15), 1 << 15, size=(3, channels))
    z[0, 0] = 0
    node = Node("RPReLU", "r", ["z"], ["y"], dict(shift=m + int(r.integers(-2, 6)), bits=bits),
                dict(m_pos=np.full(channels, 1 << m), m_neg=r.integers(-(1 << 15), 1 << 15, size=channels),
                     bias=r.integers(-(1 << 20), 1 << 20, size=channels)), f"INT{bits}")
    gold, got = both(node, z)
    assert np.array_equal(gold, got)


@SETTINGS
@given(seeds, st.integers(1, 12), st.integers(-3, 8))
def test_thresholding_sign_of_zero_is_plus_one(seed, channels, frac):
    r = rng_of(seed)
    t = r.integers(-50, 50, size=channels)
    x = r.integers(-60, 60, size=(2, 5, channels))
    x[0, 0] = t
    node = Node("Thresholding", "t", ["x"], ["y"], dict(NumChannels=channels, PE=1),
                dict(thresholds=t.reshape(-1, 1)), "BIPOLAR")
    gold, got = both(node, x, fmt={"x": SimpleNamespace(frac=frac)})
    assert np.array_equal(gold, got) and np.all(gold[0, 0] == 1)


@SETTINGS
@given(seeds, st.integers(1, 3), st.integers(1, 5), st.integers(1, 67), st.integers(1, 9))
def test_mvau(seed, b, vectors, k, n):
    r = rng_of(seed)
    x = r.choice([-1, 1], size=(b, vectors, k))
    node = Node("MVAU", "m", ["x"], ["y"], dict(MW=k, MH=n), dict(weights=r.choice([-1, 1], size=(k, n))), "UINT8")
    gold, got = both(node, x)
    assert np.array_equal(gold, got) and gold.min() >= 0 and gold.max() <= k


@SETTINGS
@given(seeds, st.integers(1, 7), st.integers(1, 7), st.sampled_from([1, 2, 3]), st.integers(1, 3),
       st.sampled_from([1, 2]), st.sampled_from([(4, 1), (4, 2), (4, 4), (3, 3), (2, 1)]), st.booleans())
def test_xnor_conv_with_zero_padded_dilated_taps(seed, h, w, k, d, stride, cg, same):
    cin, groups = cg
    r = rng_of(seed)
    pad = d * (k - 1) // 2 if same else 0
    if (h + 2 * pad - d * (k - 1)) < 1 or (w + 2 * pad - d * (k - 1)) < 1:
        return
    cout = groups * int(r.integers(1, 3))
    x = r.choice([-1, 1], size=(2, h * w, cin))
    wt = r.choice([-1, 1], size=(cout, cin // groups, k, k))
    node = Node("XnorConv2d", "c", ["x"], ["y"], dict(H=h, W=w, kernel=k, stride=stride, pad=pad, dilation=d,
                                                     groups=groups), dict(w=wt), "INT8")
    gold, got = both(node, x)
    assert np.array_equal(gold, got)


@SETTINGS
@given(seeds, st.integers(1, 6), st.integers(1, 6), st.sampled_from(["box", "mix"]), st.sampled_from(["h", "w"]),
       st.integers(1, 2))
def test_shift_branches_wrap_circularly(seed, h, w, kind, axis, reach):
    r = rng_of(seed)
    x = r.integers(-512, 512, size=(2, h * w, 8))
    node = Node("ShiftBranch", "s", ["x"], ["y"], dict(kind=kind, axis=axis, reach=reach, H=h, W=w), {}, "INT12")
    gold, got = both(node, x)
    assert np.array_equal(gold, got)


@SETTINGS
@given(seeds, st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2, 3]), st.sampled_from(["max", "sum"]))
def test_token_pool(seed, hb, wb, k, mode):
    r = rng_of(seed)
    h, w = hb * k, wb * k
    x = r.integers(-512, 512, size=(2, h * w, 5))
    node = Node("TokenPool", "p", ["x"], ["y"], dict(H=h, W=w, k=k, mode=mode), {}, "INT12")
    gold, got = both(node, x)
    assert np.array_equal(gold, got)


@SETTINGS
@given(seeds, st.sampled_from([(4, 2, 2), (4, 4, 2), (8, 4, 4), (6, 3, 3), (2, 2, 1)]), st.integers(1, 2))
def test_window_tokens_round_trip_and_pooled_upsample(seed, hwk, b):
    size, win, k = hwk
    r = rng_of(seed)
    c = 4
    x = r.integers(-512, 512, size=(b, size * size, c))
    pooled = r.integers(-512, 512, size=(b, (size // k) ** 2, c))
    tok = Node("AttentionTokens", "t", ["x", "p"], ["y"], dict(H=size, W=size, win=win), {}, "INT10")
    gold, got = both(tok, x, pooled)
    assert np.array_equal(gold, got)
    rev = Node("WindowReverse", "r", ["c"], ["y"], dict(H=size, W=size, win=win), {}, "INT10")
    g2, t2 = both(rev, gold)
    assert np.array_equal(g2, t2) and np.array_equal(g2, x)             # partition then reverse = identity
    up = Node("PooledUpsample", "u", ["c"], ["y"], dict(H=size, W=size, win=win), {}, "INT12")
    g3, t3 = both(up, gold)
    assert np.array_equal(g3, t3)


@SETTINGS
@given(seeds, st.integers(2, 40), st.integers(4, 12))
def test_integer_layernorm(seed, c, bits):
    r = rng_of(seed)
    x = r.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(3, 4, c))
    x[0, 0] = 7                                                           # zero variance row
    R = 16 + int(np.ceil(1.5 * np.log2(c))) + bits
    node = Node("IntLayerNorm", "n", ["x"], ["y"], dict(eps=int(r.integers(0, 50)), r_bits=R, shift=R + 14 - 6,
                                                       bits=10),
                dict(gmul=r.integers(1 << 13, 1 << 15, size=c), bias=r.integers(-(1 << 40), 1 << 40, size=c)),
                "INT10")
    gold, got = both(node, x)
    assert np.array_equal(gold, got)


@SETTINGS
@given(seeds, st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 2, 4]),
       st.integers(1, 9))
def test_qd_attention(seed, bw, n, m, heads, dh):
    from hw.kernels import exp_table
    r = rng_of(seed)
    c = heads * dh
    q, k, v = (r.choice([-1, 1], size=(bw, s, c)) for s in (n, m, m))
    node = Node("QDAttention", "a", ["q", "k", "v"], ["y"], dict(heads=heads, levels=3),
                dict(table=exp_table(dh, 16)), "INT8")
    gold, got = both(node, q, k, v)
    assert np.array_equal(gold, got)


@SETTINGS
@given(seeds, st.integers(1, 4), st.integers(1, 8))
def test_channel_shortcuts_token_sum_lut_and_linear(seed, ratio, c):
    r = rng_of(seed)
    x = r.integers(-512, 512, size=(2, 3, c * ratio))
    for node in (Node("RepeatChannels", "rc", ["x"], ["y"], dict(ratio=ratio), {}, "INT10"),
                 Node("GroupSumChannels", "gs", ["x"], ["y"], dict(ratio=ratio), {}, "INT12"),
                 Node("TokenSum", "ts", ["x"], ["y"], {}, {}, "INT12")):
        gold, got = both(node, x)
        assert np.array_equal(gold, got), node.op
    table = r.integers(-512, 512, size=1 << 10)
    lut = Node("Lut", "l", ["x"], ["y"], dict(in_bits=10), dict(table=table), "INT10")
    gold, got = both(lut, x)
    assert np.array_equal(gold, got)
    lin = Node("IntLinear", "fc", ["x"], ["y"], {}, dict(w=r.integers(-127, 128, size=(7, c * ratio)),
                                                        bias=r.integers(-1000, 1000, size=7)), "INT32")
    gold, got = both(lin, x[:, 0])
    assert np.array_equal(gold, got)


@SETTINGS
@given(seeds, st.integers(1, 3), st.sampled_from([(8, 2), (6, 3), (4, 1)]))
def test_stem_integer_conv(seed, cin, size_stride):
    size, stride = size_stride
    r = rng_of(seed)
    x = r.integers(0, 256, size=(2, size, size, cin))
    node = Node("IntConv2d", "stem", ["img"], ["y"], dict(stride=stride, H=size, W=size),
                dict(w=r.integers(-127, 128, size=(5, cin, stride, stride))), "INT20")
    gold, got = both(node, x)
    assert np.array_equal(gold, got)
