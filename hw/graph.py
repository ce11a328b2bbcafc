"""The integer network as a streaming dataflow graph of hardware kernels.

``build_graph(net)`` turns the folded parameters of an :class:`hw.intnet.IntNet`
into a list of :class:`Node` s in execution order.  Every node is one hardware
kernel; every tensor between nodes is a stream of integers in channel-last
token order (batch, tokens, channels), the order in which pixels and tokens
flow through the accelerator.  What a node computes, costs and generates is its
op's (:mod:`hw.ops`, found by ``node.op``); :func:`hw.execute.run` executes the
graph with the ops' golden models, and the same graph becomes an ONNX model in
:mod:`hw.onnx_graph`, where qonnx/FINN execute it node by node.

Two op types are FINN's own (domain ``finn.custom_op.fpgadataflow``), with
FINN's attributes and semantics, so that FINN's Python execution can check
them: ``Thresholding`` (a sign with a learnable bias as one integer threshold
per channel, BIPOLAR output) and ``MVAU`` (XNOR-popcount matrix product of
BIPOLAR inputs and weights; its output is the number of matching bits, which
the following ``Affine`` turns back into the +-1 dot product 2*pc - K).  The
rest live in this project's domain (:data:`DOMAIN`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DOMAIN = "hw.custom_op"
FINN_DOMAIN = "finn.custom_op.fpgadataflow"


@dataclass
class Node:
    op: str
    name: str
    inputs: list            # tensor names (streams)
    outputs: list           # tensor names
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)   # constant int64 arrays (ONNX initializers)
    dtype: str = ""         # qonnx DataType of the output stream


@dataclass
class Graph:
    nodes: list
    input: str
    output: str
    input_dtype: str = "UINT8"
    classes: int = 10

    def dtype_of(self, tensor: str) -> str:
        if tensor == self.input:
            return self.input_dtype
        for n in self.nodes:
            if tensor in n.outputs:
                return n.dtype
        raise KeyError(tensor)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def sint(max_abs: int) -> str:
    """The qonnx DataType of a signed integer in [-max_abs, max_abs]."""
    return f"INT{int(max_abs).bit_length() + 1}"


def dtype_bits(dt: str) -> int:
    if dt in ("BIPOLAR", "BINARY"):
        return 1
    return int(dt.lstrip("UINT").lstrip("INT")) if dt.startswith(("UINT", "INT")) else 32


def dtype_max_abs(dt: str) -> int:
    if dt in ("BIPOLAR", "BINARY"):
        return 1
    b = dtype_bits(dt)
    return (1 << b) - 1 if dt.startswith("UINT") else 1 << (b - 1)


class _Builder:
    """Emits nodes while walking the network in IntNet's execution order."""

    def __init__(self, net):
        self.net, self.cfg, self.p = net, net.cfg, net.p
        self.nodes: list[Node] = []
        self.dt: dict[str, str] = {}

    def add(self, op, name, inputs, dtype, attrs=None, params=None, outputs=None) -> str:
        outputs = outputs or [name]
        self.nodes.append(Node(op, name, list(inputs), outputs, dict(attrs or {}), dict(params or {}), dtype))
        for o in outputs:
            self.dt[o] = dtype
        return outputs[0]

    # ------------------------------------------------------------ kernels
    def affine(self, name, *xs, pc_k=None):
        p = self.p[name]
        pc_k = list(pc_k or [0] * len(xs))
        params = {f"m{i}": np.asarray(m, dtype=np.int64) for i, m in enumerate(p["m"])}
        params["bias"] = np.asarray(p["bias"], dtype=np.int64)
        return self.add("Affine", name, xs, f"INT{p['bits']}",
                        dict(lshifts=[int(v) for v in p["l"]], shift=int(p["shift"]), bits=int(p["bits"]), pc_k=pc_k),
                        params)

    def rprelu(self, name, z):
        p = self.p[name]
        return self.add("RPReLU", name, [z], f"INT{p['bits']}", dict(shift=int(p["shift"]), bits=int(p["bits"])),
                        dict(m_pos=p["m_pos"], m_neg=p["m_neg"], bias=p["bias"]))

    def threshold(self, name, x, channels):
        t = np.broadcast_to(np.asarray(self.p[name]["t"], dtype=np.int64).reshape(-1), (channels,))
        return self.add("Thresholding", name, [x], "BIPOLAR",
                        dict(NumChannels=channels, PE=1, numSteps=1, inputDataType=self.dt[x],
                             weightDataType=sint(int(np.abs(t).max(initial=1))), outputDataType="BIPOLAR",
                             ActVal=0),
                        dict(thresholds=t.reshape(channels, 1).copy()))

    def mvau(self, name, xb, w_pm1, vectors):
        """XNOR-popcount of (..., K) BIPOLAR tokens with (N, K) +-1 weights.
        ``vectors``: the leading shape per image ([1, tokens], or [windows,
        tokens] in attention); the ONNX export scales its first entry by the batch."""
        n, k = w_pm1.shape
        return self.add("MVAU", name, [xb], f"UINT{k.bit_length()}",
                        dict(MW=k, MH=n, SIMD=1, PE=1, inputDataType="BIPOLAR", weightDataType="BIPOLAR",
                             outputDataType=f"UINT{k.bit_length()}", accDataType=f"UINT{k.bit_length()}",
                             binaryXnorMode=0, noActivation=1, numInputVectors=list(vectors),
                             mem_mode="internal_decoupled"),
                        dict(weights=np.ascontiguousarray(w_pm1.T.astype(np.int64))))

    def unit(self, name, x, shortcut, vectors):
        """threshold -> XNOR-popcount -> affine (alpha, BN, shortcut) -> RPReLU."""
        w = self.p[name + ".linear"]["w"]
        xb = self.threshold(name + ".sign", x, w.shape[1])
        pc = self.mvau(name + ".linear", xb, w, vectors)
        z = self.affine(name + ".pre", pc, shortcut, pc_k=[w.shape[1], 0])
        return self.rprelu(name + ".act", z)

    # ------------------------------------------------------------ network
    def build(self) -> Graph:
        cfg, spec = self.cfg, self.net.spec
        size = cfg.img_size
        self.dt["image"] = "UINT8"
        w = self.p["stem.conv"]["w"]
        acc_max = int(np.abs(w).sum(axis=(1, 2, 3)).max()) * 255
        acc = self.add("IntConv2d", "stem.conv", ["image"], sint(acc_max),
                       dict(stride=cfg.stem_patch, H=size, W=size), dict(w=w))
        h = w_ = size // cfg.stem_patch
        z = self.affine("stem.affine", acc)
        if cfg.stem_gelu:
            z = self.add("Lut", "stem.gelu", [z], f"INT{spec.act_bits}", dict(in_bits=spec.lut_bits),
                         dict(table=self.p["stem.gelu"]["table"]))
        t = self.affine("stem.pos", z)
        for s in range(len(cfg.dims)):
            for i in range(cfg.depths[s]):
                t = self.block(f"stages.{s}.{i}", s, t, h, w_)
            if s < len(cfg.dims) - 1:
                t = self.downsample(f"downsamples.{s}", t, h, w_)
                h, w_ = h // 2, w_ // 2
        hn = self.affine("head.norm", t)
        n_tok = h * w_
        pooled = self.add("TokenSum", "head.pool", [hn], sint(n_tok * dtype_max_abs(self.dt[hn])))
        ph = self.p["head.fc"]
        bound = n_tok * dtype_max_abs(self.dt[hn]) * int(np.abs(ph["w"]).sum(1).max()) + int(np.abs(ph["bias"]).max())
        out = self.add("IntLinear", "head.fc", [pooled], sint(bound), {}, dict(w=ph["w"], bias=ph["bias"]))
        return Graph(self.nodes, "image", out, classes=int(ph["w"].shape[0]))

    def block(self, pre, s, t, h, w):
        cfg = self.cfg
        n1 = self.affine(pre + ".norm1", t)
        if cfg.arch == "binaryvit":
            y = self.global_attention(pre, s, t, n1, h, w)
        elif cfg.mixers[s] == "msgdc":
            y = self.msgdc(pre, s, t, n1, h, w)
        else:
            y = self.msmha(pre, s, t, n1, h, w)
        n2 = self.affine(pre + ".norm2", y)
        r = cfg.mlp_ratios[s]
        rep = self.add("RepeatChannels", pre + ".mlp.repeat", [n2], self.dt[n2], dict(ratio=r))
        u = self.unit(pre + ".mlp.fc1", n2, rep, [1, h * w])
        gs = self.add("GroupSumChannels", pre + ".mlp.pool", [u], sint(r * dtype_max_abs(self.dt[u])), dict(ratio=r))
        v = self.unit(pre + ".mlp.fc2", u, gs, [1, h * w])
        branches = []
        # BHViT's six circular shifts, or BinaryViT's four zero-padded pools (hw.intnet.SHIFT_BRANCHES)
        shifts = ((("box", "h", 1), ("box", "w", 1), ("mix", "", 1), ("box", "h", 2), ("box", "w", 2), ("mix", "", 2))
                  if cfg.arch == "bhvit" else (("box", "h", 1), ("box", "w", 1), ("box", "h", 2), ("box", "w", 2)))
        pad = {} if cfg.arch == "bhvit" else {"pad": "zero"}
        for kind, axis, reach in shifts if cfg.shift_branches else ():
            bname = f"{pre}.shift.{kind}{axis}{reach}"
            mx = dtype_max_abs(self.dt[n2]) * (2 * reach + 1 if kind == "box" else 1)
            branches.append(self.add("ShiftBranch", bname, [n2], sint(mx),
                                     dict(kind=kind, axis=axis, reach=reach, H=h, W=w, **pad)))
        return self.affine(pre + ".out", y, v, *branches)

    def msgdc(self, pre, s, t, n1, h, w):
        cfg, mx = self.cfg, pre + ".mixer"
        xb = self.threshold(mx + ".sign", n1, cfg.dims[s])
        outs = []
        for j, d in enumerate(cfg.dilations):
            wt = self.p[f"{mx}.convs.{j}"]["w"]
            k_terms = int(np.prod(wt.shape[1:]))
            acc = self.add("XnorConv2d", f"{mx}.convs.{j}", [xb], sint(k_terms),
                           dict(H=h, W=w, kernel=int(wt.shape[-1]), stride=1, pad=d, dilation=d,
                                groups=cfg.conv_groups), dict(w=wt))
            z = self.affine(f"{mx}.convs.{j}.pre", acc, n1)
            outs.append(self.rprelu(f"{mx}.acts.{j}", z))
        return self.affine(pre + ".y", t, *outs)

    def global_attention(self, pre, s, t, n1, h, w):
        """BinaryViT's mixer (hw.intnet._Folder.global_attention): one window of all h x w
        tokens; keys and values from r x r pooled tokens, nearest-upsampled for the context sum."""
        cfg = self.cfg
        at = pre + ".mixer.attention"
        r, dim = cfg.kv_reduction[s], cfg.dims[s]
        q = self.unit(at + ".q", n1, n1, [1, h * w])
        src, m = n1, h * w
        if r > 1:
            psum = self.add("TokenPool", at + ".sumpool", [n1], sint(r * r * dtype_max_abs(self.dt[n1])),
                            dict(H=h, W=w, k=r, mode="sum"))
            pooled = self.affine(at + ".pool", psum)
            m = (h // r) * (w // r)
            src = self.unit(at + ".reduce", pooled, pooled, [1, m])
        kk = self.unit(at + ".k", src, src, [1, m])
        v = self.unit(at + ".v", src, src, [1, m])
        qb = self.threshold(at + ".q_sign", q, dim)
        kb = self.threshold(at + ".k_sign", kk, dim)
        vb = self.threshold(at + ".v_sign", v, dim)
        qd = self.p[at + ".qd"]
        ctx = self.add("QDAttention", at + ".qd", [qb, kb, vb], sint(m),
                       dict(heads=cfg.heads[s], levels=1, num1=int(qd["num1"]), step=0, den=int(qd["den"])),
                       dict(table=qd["table"]))
        if r > 1:      # k and v back on the map: each pooled token over its r x r block
            kk = self.add("PooledUpsample", at + ".k_up", [kk], sint(dtype_max_abs(self.dt[kk])), dict(H=h, W=w, win=0))
            v = self.add("PooledUpsample", at + ".v_up", [v], sint(dtype_max_abs(self.dt[v])), dict(H=h, W=w, win=0))
        c = self.rprelu(at + ".context_act", self.affine(at + ".context", ctx, q, kk, v))
        pr = self.unit(pre + ".mixer.proj", c, c, [1, h * w])
        return self.affine(pre + ".y", t, pr)

    def msmha(self, pre, s, t, n1, h, w):
        cfg = self.cfg
        at = pre + ".mixer.attention"
        win, k, dim = cfg.window[s], cfg.pool_kernel[s], cfg.dims[s]
        n_win = (h // win) * (w // win)
        pmax = self.add("TokenPool", at + ".maxpool", [n1], self.dt[n1], dict(H=h, W=w, k=k, mode="max"))
        psum = self.add("TokenPool", at + ".sumpool", [n1], sint(k * k * dtype_max_abs(self.dt[n1])),
                        dict(H=h, W=w, k=k, mode="sum"))
        high = self.affine(at + ".high", pmax, psum)
        tok = self.add("AttentionTokens", at + ".tokens", [n1, high], self.dt[n1], dict(H=h, W=w, win=win))
        pl = self.p[at + ".token_norm"]
        tn = self.add("IntLayerNorm", at + ".token_norm", [tok], f"INT{pl['bits']}",
                      dict(eps=int(pl["eps"]), r_bits=int(pl["r_bits"]), shift=int(pl["shift"]), bits=int(pl["bits"])),
                      dict(gmul=pl["gmul"], bias=pl["bias"]))
        n_tok = win * win + (h // k) * (w // k)
        vec = [n_win, n_tok]
        q = self.unit(at + ".q", tn, tn, vec)
        kk = self.unit(at + ".k", tn, tn, vec)
        v = self.unit(at + ".v", tn, tn, vec)
        qb = self.threshold(at + ".q_sign", q, dim)
        kb = self.threshold(at + ".k_sign", kk, dim)
        vb = self.threshold(at + ".v_sign", v, dim)
        qd = self.p[at + ".qd"]
        levels = int(qd["levels"])
        ctx = self.add("QDAttention", at + ".qd", [qb, kb, vb], sint(levels * n_tok),
                       dict(heads=cfg.heads[s], levels=levels), dict(table=qd["table"]))
        c = self.rprelu(at + ".context_act", self.affine(at + ".context", ctx, q, kk, v))
        local = self.add("WindowReverse", at + ".local", [c], self.dt[c], dict(H=h, W=w, win=win))
        hi = self.add("PooledUpsample", at + ".pooled", [c], sint(n_win * dtype_max_abs(self.dt[c])),
                      dict(H=h, W=w, win=win))
        xa = self.affine(at + ".blend", local, hi)
        pr = self.unit(pre + ".mixer.proj", xa, xa, [1, h * w])
        return self.affine(pre + ".y", t, pr)

    def downsample(self, pre, t, h, w):
        xn = self.affine(pre + ".norm0", t)
        if self.cfg.downsample == "fp":
            return self.fp_downsample(pre, xn, h, w)
        wt = self.p[pre + ".proj"]["w"]
        cin = wt.shape[1]
        xb = self.threshold(pre + ".sign", xn, cin)
        acc = self.add("XnorConv2d", pre + ".proj", [xb], sint(int(np.prod(wt.shape[1:]))),
                       dict(H=h, W=w, kernel=int(wt.shape[-1]), stride=2, pad=0, dilation=1, groups=1), dict(w=wt))
        sp = self.add("TokenPool", pre + ".sumpool", [xn], sint(4 * dtype_max_abs(self.dt[xn])),
                      dict(H=h, W=w, k=2, mode="sum"))
        ratio = wt.shape[0] // cin
        rep = self.add("RepeatChannels", pre + ".repeat", [sp], self.dt[sp], dict(ratio=ratio))
        z = self.affine(pre + ".pre", acc, rep)
        return self.rprelu(pre + ".act", z)

    def fp_downsample(self, pre, xn, h, w):
        pc = self.add("PatchConcat", pre + ".patches", [xn], self.dt[xn], dict(H=h, W=w, k=2))
        p = self.p[pre + ".proj"]
        bound = dtype_max_abs(self.dt[xn]) * int(np.abs(p["w"]).sum(1).max())
        acc = self.add("IntLinear", pre + ".proj", [pc], sint(bound), {}, dict(w=p["w"], bias=p["bias"]))
        return self.affine(pre + ".norm", acc)


def build_graph(net) -> Graph:
    return _Builder(net).build()


def op_counts(graph: Graph) -> dict:
    out: dict = {}
    for n in graph.nodes:
        out[n.op] = out.get(n.op, 0) + 1
    return out
