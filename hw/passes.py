"""Graph passes from the network's dataflow graph (:func:`hw.graph.build_graph`) to the one the
hardware flows build.  Each pass takes a :class:`hw.graph.Graph` and returns a new one that
computes the same integers on every stream it keeps (qonnx / FINN style); the input graph is
left as it was, so QAT (:mod:`hw.qat`) keeps training the network's own constants.

The passes belong to the ops they introduce (:attr:`hw.ops.HwOp.lower`, e.g. the fused shift
unit of :mod:`hw.ops.shift_conv`); ``lower(graph)`` applies every registered op's pass in
``lowering_order``.  ``make export``, ``make hls``, ``make sim`` and the bitstream flow fold and
build the lowered graph.
"""
from __future__ import annotations

from .graph import Graph
from .ops import REGISTRY


def passes() -> list:
    """The registered ops' passes, in the order lower() applies them: [(op type, pass)]."""
    ops = sorted((cls for cls in REGISTRY.values() if cls.lower is not None),
                 key=lambda cls: (cls.lowering_order, cls.op_type))
    return [(cls.op_type, cls.lower) for cls in ops]


def lower(graph: Graph) -> Graph:
    """The graph the hardware flows fold and build: every op's pass in order."""
    for _, p in passes():
        graph = p(graph)
    return graph
