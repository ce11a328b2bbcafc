"""The dataflow graph of :mod:`hw.graph` as an ONNX model in FINN's form.

Every node becomes one ONNX node: FINN's ``Thresholding`` and ``MVAU`` in
FINN's domain with FINN's attributes, the rest in this project's domain
(:mod:`hw.custom_op`).  Constants become initializers, every stream gets its
shape (channel-last) and its qonnx DataType annotation, so qonnx's
``execute_onnx`` runs the model with FINN's Python execution of its own nodes
and the golden semantics of ours.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from .graph import DOMAIN, FINN_DOMAIN, FINN_OPS, Graph, run


class UnsupportedGraphError(ValueError):
    """A node the hardware flow has no kernel for, or a malformed binary layer."""


def stream_shapes(graph: Graph, batch: int, image_shape) -> dict:
    """Shape of every stream for a batch, from one run on a blank batch."""
    trace: dict = {}
    run(graph, np.zeros((batch, *image_shape), dtype=np.int64), trace)
    shapes = {k: tuple(v.shape) for k, v in trace.items()}
    shapes[graph.input] = (batch, *image_shape)
    return shapes


def to_onnx(graph: Graph, image_shape, batch: int = 1):
    """-> qonnx ModelWrapper.  ``image_shape`` is (H, W, C) of one input image."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    shapes = stream_shapes(graph, batch, image_shape)
    nodes, inits, vinfo = [], [], []
    for n in graph.nodes:
        attrs = dict(n.attrs)
        const_names = []
        for k, v in n.params.items():
            cname = f"{n.name}|{k}"
            arr = np.asarray(v)
            # FINN's nodes keep its float32 container convention; ours stay int64
            arr = arr.astype(np.float32) if n.op in FINN_OPS else arr.astype(np.int64)
            inits.append(numpy_helper.from_array(arr, cname))
            const_names.append(cname)
        if n.op in FINN_OPS:
            # FINN's vectors: every leading dimension of the input stream
            attrs["numInputVectors"] = [int(v) for v in shapes[n.inputs[0]][:-1]]
            attrs["backend"] = "fpgadataflow"
        else:
            attrs["out_dtype"] = n.dtype
            if n.params:
                attrs["param_names"] = list(n.params)
        nodes.append(helper.make_node(n.op, list(n.inputs) + const_names, list(n.outputs), name=n.name,
                                      domain=n.domain, **attrs))
        for o in n.outputs:
            if o != graph.output:
                vinfo.append(helper.make_tensor_value_info(o, TensorProto.FLOAT, list(shapes[o])))
    g = helper.make_graph(
        nodes, "bhvit_dataflow",
        [helper.make_tensor_value_info(graph.input, TensorProto.FLOAT, list(shapes[graph.input]))],
        [helper.make_tensor_value_info(graph.output, TensorProto.FLOAT, list(shapes[graph.output]))],
        initializer=inits, value_info=vinfo)
    model = ModelWrapper(qonnx_make_model(g, producer_name="bhvit-fpga"))
    model.set_tensor_datatype(graph.input, DataType[graph.input_dtype])
    for n in graph.nodes:
        for o in n.outputs:
            model.set_tensor_datatype(o, DataType[n.dtype])
        for k, v in n.params.items():
            if n.op == "MVAU" and k == "weights":
                model.set_tensor_datatype(f"{n.name}|{k}", DataType["BIPOLAR"])
            elif n.op == "Thresholding":
                model.set_tensor_datatype(f"{n.name}|{k}", DataType[n.attrs["weightDataType"]])
    return model


def validate(model) -> None:
    """Every node must be a kernel this flow implements and every binary
    weight must be +-1; otherwise UnsupportedGraphError names the node."""
    from .ops import ATTRS
    supported = sorted(ATTRS) + list(FINN_OPS)
    problems = []
    for node in model.graph.node:
        ok = (node.domain == FINN_DOMAIN and node.op_type in FINN_OPS) or \
             (node.domain == DOMAIN and node.op_type in ATTRS)
        if not ok:
            problems.append(f"node '{node.name}': op {node.op_type} (domain '{node.domain or 'ai.onnx'}') has no "
                            f"hardware kernel; supported: {', '.join(supported)}")
            continue
        if node.op_type in ("MVAU", "XnorConv2d"):
            w = model.get_initializer(node.input[1])
            if w is None or not np.all(np.abs(np.asarray(w)) == 1):
                problems.append(f"node '{node.name}': binary layer whose weights are not all +-1 "
                                f"(re-export from a checkpoint with binary weights)")
    if problems:
        raise UnsupportedGraphError("the graph cannot be mapped to hardware:\n  " + "\n  ".join(problems))


def execute_full(model, images_nhwc) -> dict:
    """Every stream of a qonnx execution (inputs, constants and outputs included)."""
    from qonnx.core.onnx_exec import execute_onnx
    import finn.custom_op.fpgadataflow  # noqa: F401  (registers FINN's op classes)
    inp = model.graph.input[0].name
    return execute_onnx(model, {inp: np.asarray(images_nhwc, dtype=np.float32)}, return_full_exec_context=True)


def execute(model, images_nhwc) -> np.ndarray:
    """Run the ONNX graph with qonnx (FINN's Python execution for its nodes)."""
    from qonnx.core.onnx_exec import execute_onnx
    inp = model.graph.input[0].name
    out = model.graph.output[0].name
    res = execute_onnx(model, {inp: np.asarray(images_nhwc, dtype=np.float32)})[out]
    return np.rint(np.asarray(res, dtype=np.float64)).astype(np.int64)
