"""Graph passes from the network's dataflow graph (:func:`hw.graph.build_graph`) to the one the
hardware flows build.  Each pass takes a :class:`hw.graph.Graph` and returns a new one that
computes the same integers on every stream it keeps (qonnx / FINN style); the input graph is
left as it was, so QAT (:mod:`hw.qat`) keeps training the network's own constants.

``lower(graph)`` applies them all; ``make export``, ``make hls``, ``make sim`` and the bitstream
flow fold and build the lowered graph.
"""
from __future__ import annotations

import copy

import numpy as np

from .graph import Graph, Node, dtype_max_abs, sint
from .kernels.shift import CROSS_TAPS, branch_taps


def _readers(graph: Graph, tensor: str) -> list:
    """Names of the nodes that read ``tensor``."""
    return [n.name for n in graph.nodes if tensor in n.inputs]


def fuse_shift_units(graph: Graph) -> Graph:
    """The shift module of a block as one kernel.

    BHViT's shift module is six branches on one map h (box sums along H and W with reach 1
    and 2, two channel mixes), each scaled by its LayerScale in the block's output Affine:
    sum_b (branch_b(h) * m_b) << l_b.  Every branch sums taps of h from the 9-tap cross
    (hw.kernels.shift.CROSS_TAPS), so the six terms are one circular depthwise convolution
    over the cross with coef[c, t] = sum over the branches b that read tap t at channel c of
    m_b[c] << (l_b - l), l = min_b l_b, entering the Affine as one term (x 1) << l: the same
    integers, exactly.  In hardware that is one map buffer instead of six and 9 buffer reads
    per output word instead of 18, and an Affine with 3 inputs instead of 8.

    Fused: an Affine's ShiftBranch inputs that all read one tensor, each read by that Affine
    alone, and not popcount inputs (pc_k 0).  Everything else is copied unchanged."""
    nodes = copy.deepcopy(graph.nodes)       # folding sets attributes in place: never share them
    by_out = {n.outputs[0]: n for n in nodes}
    drop, replace = set(), {}
    for aff in nodes:
        if aff.op != "Affine":
            continue
        pc_k = list(aff.attrs.get("pc_k") or [0] * len(aff.inputs))
        idx = [i for i, t in enumerate(aff.inputs)
               if t in by_out and by_out[t].op == "ShiftBranch" and pc_k[i] == 0
               and _readers(graph, t) == [aff.name]]
        sources = {by_out[aff.inputs[i]].inputs[0] for i in idx}
        if not idx or len(sources) != 1:
            continue
        branches = [by_out[aff.inputs[i]] for i in idx]
        h, w = branches[0].attrs["H"], branches[0].attrs["W"]
        if any((b.attrs["H"], b.attrs["W"]) != (h, w) for b in branches):
            continue
        src = sources.pop()
        sizes = {int(np.size(aff.params[f"m{i}"])) for i in range(len(aff.inputs))} - {1}
        if len(sizes) != 1:             # the channel count from the per-channel multipliers
            continue
        channels = sizes.pop()
        lsh = aff.attrs["lshifts"]
        low = min(lsh[i] for i in idx)
        coef = np.zeros((channels, len(CROSS_TAPS)), dtype=np.int64)
        for i, b in zip(idx, branches):
            m = np.broadcast_to(np.asarray(aff.params[f"m{i}"], dtype=np.int64), (channels,))
            for chans, t in branch_taps(b.attrs["kind"], b.attrs["axis"], b.attrs["reach"], channels):
                coef[chans, t] += m[chans] << (lsh[i] - low)
        in_max = dtype_max_abs(graph.dtype_of(src))
        name = branches[0].name.rsplit(".", 1)[0]           # "<block>.shift"
        conv = Node("ShiftConv", name, [src], [name], dict(H=h, W=w), dict(coef=coef),
                    sint(in_max * int(np.abs(coef).sum(axis=1).max(initial=1))))
        keep = [i for i in range(len(aff.inputs)) if i not in idx]
        params = {f"m{j}": aff.params[f"m{i}"] for j, i in enumerate(keep)}
        params[f"m{len(keep)}"] = np.ones(channels, dtype=np.int64)
        params["bias"] = aff.params["bias"]
        attrs = dict(aff.attrs, lshifts=[lsh[i] for i in keep] + [low], pc_k=[pc_k[i] for i in keep] + [0])
        fused = Node("Affine", aff.name, [aff.inputs[i] for i in keep] + [name], list(aff.outputs), attrs, params,
                     aff.dtype)
        drop.update(b.name for b in branches)
        replace[branches[0].name] = conv
        replace[aff.name] = fused
    out = []
    for n in nodes:
        if n.name in replace:
            out.append(replace[n.name])
        elif n.name not in drop:
            out.append(n)
    return Graph(out, graph.input, graph.output, graph.input_dtype, graph.classes)


PASSES = (fuse_shift_units,)


def lower(graph: Graph) -> Graph:
    """The graph the hardware flows fold and build: every pass of PASSES in order."""
    for p in PASSES:
        graph = p(graph)
    return graph
