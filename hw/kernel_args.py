"""The kernel of a graph node, backend-neutral: which generator family builds it and with what.

Both code generators, hw/csim.py ``node_code`` (HLS C++, the ``*_code`` functions) and
hw/rtlsim.py ``node_rtl`` (SystemVerilog, the ``*_rtl`` functions), map a :class:`hw.graph.Graph`
node to the same arguments: :func:`kernel_args` does it once (dtype look-ups, folding, the
checks a node must pass), and each backend keeps a table {family: generator}.
"""
from __future__ import annotations

from .csim import _dt, _pooled_tokens

TOKEN_OPS = ("ShiftBranch", "RepeatChannels", "GroupSumChannels", "TokenPool", "TokenSum")
WINDOW_OPS = ("AttentionTokens", "WindowReverse", "PooledUpsample")
# the generator family of every op with a kernel
FAMILY = {"Thresholding": "threshold", "MVAU": "mvau", "Affine": "fixed", "RPReLU": "fixed", "XnorConv2d": "xnor_conv",
          "Lut": "lut", **dict.fromkeys(TOKEN_OPS, "token"), "IntConv2d": "int_conv", "IntLinear": "int_linear",
          "IntLayerNorm": "layernorm", "QDAttention": "qd_attention", **dict.fromkeys(WINDOW_OPS, "window"),
          "ShiftConv": "shift_conv"}


def kernel_args(graph, node, channels: int, tokens_in: int = 0, *, backend: str = "HLS") -> tuple[str, dict]:
    """(family, kwargs) of one node whose output stream has ``channels`` values per row and whose
    first input ``tokens_in`` rows per image: the generator ``<family>_code`` / ``<family>_rtl``
    called with ``**kwargs`` builds its kernel with its folding (PE / SIMD; 1 where unset).
    Raises ValueError for a node the kernels cannot take, NotImplementedError ("no ``backend``
    kernel") for an op without one."""
    family = FAMILY.get(node.op)
    if family is None:        # before any look-up: the node need not be in the graph
        raise NotImplementedError(f"{node.name}: no {backend} kernel for {node.op} yet")
    a, p = node.attrs, node.params
    pe = int(a.get("PE", 1))
    simd = int(a.get("SIMD", 1))
    din, dout = _dt(graph, node.inputs[0]), _dt(graph, node.outputs[0])
    name = node.name
    if family == "threshold":
        return family, dict(name=name, thresholds=p["thresholds"][:, 0], in_bits=din.bitwidth(), pe=pe)
    if family == "mvau":
        return family, dict(name=name, w_bits=(p["weights"].T + 1) // 2, simd=simd, pe=pe)
    if family == "fixed":
        dts = [_dt(graph, t) for t in node.inputs]
        if node.op == "Affine":
            kind, mults = "affine", {f"m{i}": p[f"m{i}"] for i in range(len(dts))}
        else:
            kind, mults = "rprelu", {"m_pos": p["m_pos"], "m_neg": p["m_neg"]}
        return family, dict(name=name, kind=kind, in_bits=[d.bitwidth() for d in dts],
                            signed=[d.signed() for d in dts], mults=mults, bias=p["bias"], shift=a["shift"],
                            out_bits=a["bits"], pe=pe, lshifts=a.get("lshifts"), pc_k=a.get("pc_k"),
                            channels=channels)
    if family == "xnor_conv":
        return family, dict(name=name, w=p["w"], h=a["H"], w_=a["W"], stride=a["stride"], pad=a["pad"],
                            dilation=a["dilation"], groups=a["groups"], pe=pe, out_bits=dout.bitwidth())
    if family == "lut":
        return family, dict(name=name, table=p["table"], in_bits=a["in_bits"], channels=channels, pe=pe,
                            out_bits=dout.bitwidth())
    if family == "token":
        return family, dict(name=name, op=node.op, a=a, out_channels=channels, pe=pe, in_bits=din.bitwidth(),
                            in_signed=din.signed(), out_bits=dout.bitwidth(), out_signed=dout.signed(),
                            tokens_in=tokens_in)
    if family == "shift_conv":
        return family, dict(name=name, coef=p["coef"], h=a["H"], w=a["W"], channels=channels, pe=pe,
                            in_bits=din.bitwidth(), in_signed=din.signed(), out_bits=dout.bitwidth())
    if family == "int_conv":
        if din.bitwidth() != 8 or din.signed():
            raise ValueError(f"{name}: the stem kernel takes 8-bit unsigned pixels, not {din.name}")
        return family, dict(name=name, w=p["w"], h=a["H"], w_=a["W"], stride=a["stride"], simd=simd, pe=pe,
                            out_bits=dout.bitwidth())
    if family == "int_linear":
        return family, dict(name=name, w=p["w"], bias=p["bias"], in_bits=din.bitwidth(), in_signed=din.signed(),
                            simd=simd, pe=pe, out_bits=dout.bitwidth())
    if family == "layernorm":
        return family, dict(name=name, gmul=p["gmul"], bias=p["bias"], eps=a["eps"], r_bits=a["r_bits"],
                            shift=a["shift"], in_bits=din.bitwidth(), in_signed=din.signed(), out_bits=a["bits"],
                            pe=pe)
    if family == "qd_attention":
        return family, dict(name=name, table=p["table"], heads=a["heads"], levels=a["levels"], channels=channels,
                            tokens=tokens_in, pe=pe, out_bits=dout.bitwidth())
    # family == "window": the pooled tokens (AttentionTokens: those of its input 1; the others:
    # those after the win x win of each window of input 0)
    if node.op == "AttentionTokens":
        d1 = _dt(graph, node.inputs[1])
        if (d1.bitwidth(), d1.signed()) != (din.bitwidth(), din.signed()):
            raise ValueError(f"{name}: the map ({din.name}) and the pooled tokens ({d1.name}) differ")
        pooled = _pooled_tokens(graph, node.inputs[1])
    else:
        pooled = tokens_in - a["win"] * a["win"]
        if pooled < 0:
            raise ValueError(f"{name}: needs the tokens per window (win^2 + pooled), got {tokens_in}")
    return family, dict(name=name, op=node.op, h=a["H"], w=a["W"], win=a["win"], pooled=pooled, channels=channels,
                        pe=pe, in_bits=din.bitwidth(), in_signed=din.signed(), out_bits=dout.bitwidth())
