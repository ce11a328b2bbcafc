"""Golden execution of a dataflow graph (:mod:`hw.graph`) with its ops' integer models.

``run(graph, images)`` executes every node with :meth:`hw.ops.HwOp.execute` (numpy int64,
the definition of what the hardware computes); ``stream_shapes`` gives every stream's shape
for a batch, which sizes the kernels (folding, cost, code generation).
"""
from __future__ import annotations

import numpy as np

from .ops import op_of


def as_int(x) -> np.ndarray:
    """A stream as int64; a float stream must hold integers (ONNX containers are float)."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        r = np.rint(x)
        if not np.array_equal(r, x):
            raise ValueError("a stream carries non-integer values")
        return r.astype(np.int64)
    return x.astype(np.int64)


def execute(node, inputs) -> list:
    """The golden outputs of one node on its input streams."""
    return op_of(node).execute(*[as_int(x) for x in inputs])


def run(graph, image_nhwc, trace: dict | None = None) -> np.ndarray:
    """Execute the graph with the golden kernels: uint8 NHWC images -> int64 logits;
    ``trace`` receives every stream."""
    env = {graph.input: np.asarray(image_nhwc, dtype=np.int64)}
    for node in graph.nodes:
        outs = execute(node, [env[i] for i in node.inputs])
        for name, y in zip(node.outputs, outs):
            env[name] = y
            if trace is not None:
                trace[name] = y
    return env[graph.output]


def stream_shapes(graph, batch: int, image_shape) -> dict:
    """Shape of every stream for a batch, from one run on a blank batch."""
    trace: dict = {}
    run(graph, np.zeros((batch, *image_shape), dtype=np.int64), trace)
    shapes = {k: tuple(v.shape) for k, v in trace.items()}
    shapes[graph.input] = (batch, *image_shape)
    return shapes
