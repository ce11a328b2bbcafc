"""Execution semantics of every dataflow-graph op, on int64 numpy arrays.

``execute(node, inputs)`` is the golden model of one kernel node of
:mod:`hw.graph`: it calls the integer kernels of :mod:`hw.kernels` on the
node's streams (channel-last tokens) and constants.  The ONNX custom ops of
:mod:`hw.custom_op` call the same function, so the ONNX graph and the golden
executor cannot drift apart; FINN's ``Thresholding`` and ``MVAU`` are written
here from their documented semantics and cross-checked against FINN's own
Python execution in the tests.
"""
from __future__ import annotations

import math

import numpy as np

from . import kernels as K


def _map(t, h, w):
    b, n, c = t.shape
    if n != h * w:
        raise ValueError(f"expected {h}x{w} = {h * w} tokens, got {n}")
    return t.transpose(0, 2, 1).reshape(b, c, h, w)


def _tok(m):
    b, c, h, w = m.shape
    return m.reshape(b, c, h * w).transpose(0, 2, 1)


def _int(x):
    x = np.asarray(x)
    if x.dtype.kind == "f":
        r = np.rint(x)
        if not np.array_equal(r, x):
            raise ValueError("a stream carries non-integer values")
        return r.astype(np.int64)
    return x.astype(np.int64)


def op_int_conv2d(a, p, x):
    """Stem: integer conv of the uint8 NHWC image -> tokens."""
    acc = K.int_conv2d(x.transpose(0, 3, 1, 2), p["w"], stride=a["stride"])
    return [_tok(np.rint(acc).astype(np.int64))]


def op_affine(a, p, *xs):
    terms = []
    for i, x in enumerate(xs):
        k = a["pc_k"][i] if a.get("pc_k") else 0
        if k:                           # MVAU popcount of matches -> +-1 dot product
            x = 2 * x - k
        terms.append((x, p[f"m{i}"], a["lshifts"][i]))
    return [K.affine_sum(terms, p["bias"], a["shift"], a["bits"])]


def op_rprelu(a, p, z):
    return [K.rprelu(z, p["m_pos"], p["m_neg"], p["bias"], a["shift"], a["bits"])]


def op_lut(a, p, x):
    return [K.lut(x, p["table"], a["in_bits"])]


def op_thresholding(a, p, x):
    """FINN Thresholding with one step and a BIPOLAR output: +1 where x >= t[c]."""
    return [K.threshold(x, p["thresholds"][:, 0]).astype(np.int64)]


def op_mvau(a, p, x):
    """FINN MVAU on BIPOLAR data and weights: the number of positions where
    input and weight agree (XNOR popcount), for each of the MH outputs."""
    w = p["weights"]                    # (MW, MH), +-1
    dot = K.xnor_matmul(x.astype(np.int8), w.T.astype(np.int8))
    return [(dot + a["MW"]) // 2]


def op_xnor_conv2d(a, p, xb):
    m = _map(xb, a["H"], a["W"]).astype(np.int8)
    acc = K.binary_conv2d(m, p["w"].astype(np.int8), stride=a["stride"], padding=a["pad"],
                          dilation=a["dilation"], groups=a["groups"])
    return [_tok(acc)]


def op_repeat_channels(a, p, x):
    return [K.repeat_channels(x, a["ratio"])]


def op_group_sum_channels(a, p, x):
    return [K.group_sum_channels(x, a["ratio"])]


def op_shift_branch(a, p, x):
    m = _map(x, a["H"], a["W"])
    if a["kind"] == "box":
        y = K.box_sum(m, a["reach"], 2 if a["axis"] == "h" else 3)
    else:
        y = K.channel_mix(m, a["reach"])
    return [_tok(y)]


def op_shift_conv(a, p, x):
    return [_tok(K.cross_conv(_map(x, a["H"], a["W"]), p["coef"]))]


def op_token_pool(a, p, x):
    m = _map(x, a["H"], a["W"])
    pool = K.max_pool if a["mode"] == "max" else K.sum_pool
    return [_tok(pool(m, a["k"]))]


def op_attention_tokens(a, p, x, pooled):
    """Window partition of the map plus the pooled tokens appended to every window."""
    win = K.window_partition(_map(x, a["H"], a["W"]), a["win"])
    n_win = win.shape[0] // x.shape[0]
    return [np.concatenate([win, np.repeat(pooled, n_win, axis=0)], axis=1)]


def op_layernorm(a, p, x):
    return [K.layernorm_int(x, p["gmul"], p["bias"], a["eps"], a["r_bits"], a["shift"], a["bits"])]


def op_qd_attention(a, p, qb, kb, vb):
    heads = a["heads"]

    def split(t):
        bw, n, c = t.shape
        return t.reshape(bw, n, heads, c // heads).transpose(0, 2, 1, 3).astype(np.int8)

    ctx = K.qd_attention(split(qb), split(kb), split(vb), p["table"], a["levels"])
    return [ctx.transpose(0, 2, 1, 3).reshape(qb.shape)]


def op_window_reverse(a, p, c):
    n_local = a["win"] * a["win"]
    return [_tok(K.window_reverse(c[:, :n_local], a["win"], a["H"], a["W"]))]


def op_pooled_upsample(a, p, c):
    """Sum of the pooled tokens over all windows, upsampled back to the map."""
    h, w, win = a["H"], a["W"], a["win"]
    n_win = (h // win) * (w // win)
    high = c[:, win * win:]
    side = int(round(math.sqrt(high.shape[1])))
    b, dim = c.shape[0] // n_win, c.shape[-1]
    high = high.reshape(b, n_win, side, side, dim).sum(1).transpose(0, 3, 1, 2)
    return [_tok(K.upsample_nearest(high, h // side))]


def op_token_sum(a, p, x):
    return [x.sum(1)]


def op_int_linear(a, p, x):
    return [K.int_matmul(x, p["w"]) + p["bias"]]


# Attributes of the project's own ops: name -> ONNX attribute type.  Every
# node also has PE (folding: channels per cycle), out_dtype (qonnx DataType of
# its output stream) and param_names (the order of its constant inputs).
ATTRS = {
    "IntConv2d": {"stride": "i", "H": "i", "W": "i"},
    "Affine": {"lshifts": "ints", "shift": "i", "bits": "i", "pc_k": "ints"},
    "RPReLU": {"shift": "i", "bits": "i"},
    "Lut": {"in_bits": "i"},
    "XnorConv2d": {"H": "i", "W": "i", "kernel": "i", "stride": "i", "pad": "i", "dilation": "i", "groups": "i"},
    "RepeatChannels": {"ratio": "i"},
    "GroupSumChannels": {"ratio": "i"},
    "ShiftBranch": {"kind": "s", "axis": "s", "reach": "i", "H": "i", "W": "i"},
    "ShiftConv": {"H": "i", "W": "i"},
    "TokenPool": {"H": "i", "W": "i", "k": "i", "mode": "s"},
    "AttentionTokens": {"H": "i", "W": "i", "win": "i"},
    "IntLayerNorm": {"eps": "i", "r_bits": "i", "shift": "i", "bits": "i"},
    "QDAttention": {"heads": "i", "levels": "i"},
    "WindowReverse": {"H": "i", "W": "i", "win": "i"},
    "PooledUpsample": {"H": "i", "W": "i", "win": "i"},
    "TokenSum": {},
    "IntLinear": {},
}

OPS = {
    "IntConv2d": op_int_conv2d, "Affine": op_affine, "RPReLU": op_rprelu, "Lut": op_lut,
    "Thresholding": op_thresholding, "MVAU": op_mvau, "XnorConv2d": op_xnor_conv2d,
    "RepeatChannels": op_repeat_channels, "GroupSumChannels": op_group_sum_channels,
    "ShiftBranch": op_shift_branch, "ShiftConv": op_shift_conv, "TokenPool": op_token_pool,
    "AttentionTokens": op_attention_tokens,
    "IntLayerNorm": op_layernorm, "QDAttention": op_qd_attention, "WindowReverse": op_window_reverse,
    "PooledUpsample": op_pooled_upsample, "TokenSum": op_token_sum, "IntLinear": op_int_linear,
}


def execute(node, inputs) -> list:
    fn = OPS.get(node.op)
    if fn is None:
        raise NotImplementedError(f"no execution semantics for op '{node.op}' (node {node.name})")
    return fn(node.attrs, node.params, *[_int(x) for x in inputs])
