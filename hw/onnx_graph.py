"""The dataflow graph of :mod:`hw.graph` as an ONNX model in FINN's form.

Every node becomes one ONNX node in its op's domain (:attr:`hw.ops.HwOp.domain`):
FINN's ``Thresholding`` and ``MVAU`` in FINN's domain with FINN's attributes, the
rest in this project's domain (:mod:`hw.custom_op`).  Constants become initializers, every stream gets its
shape (channel-last) and its qonnx DataType annotation, so qonnx's
``execute_onnx`` runs the model with FINN's Python execution of its own nodes
and the golden semantics of ours.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from .execute import stream_shapes
from .graph import FINN_DOMAIN, Graph
from .ops import REGISTRY, op_of


class UnsupportedGraphError(ValueError):
    """A node the hardware flow has no kernel for, or a malformed binary layer."""


def node_proto(n, in_shape0) -> tuple:
    """One graph node in ONNX: (NodeProto, its constants as initializers named ``<node>|<key>``).
    ``in_shape0``: the shape of its first input (FINN's numInputVectors)."""
    op = op_of(n)
    finn = op.domain == FINN_DOMAIN
    attrs = dict(n.attrs)
    inits = []
    for k, v in n.params.items():
        arr = np.asarray(v)
        # FINN's nodes keep its float32 container convention; ours stay int64
        arr = arr.astype(np.float32) if finn else arr.astype(np.int64)
        inits.append(numpy_helper.from_array(arr, f"{n.name}|{k}"))
    if finn:
        # FINN's vectors: every leading dimension of the input stream
        attrs["numInputVectors"] = [int(v) for v in in_shape0[:-1]]
        attrs["backend"] = "fpgadataflow"
    else:
        attrs["out_dtype"] = n.dtype
        if n.params:
            attrs["param_names"] = list(n.params)
    node = helper.make_node(n.op, list(n.inputs) + [t.name for t in inits], list(n.outputs), name=n.name,
                            domain=op.domain, **attrs)
    return node, inits


def annotate(model, nodes) -> None:
    """qonnx DataType annotations of the nodes' outputs and of the constants their ops name."""
    from qonnx.core.datatype import DataType
    for n in nodes:
        for o in n.outputs:
            model.set_tensor_datatype(o, DataType[n.dtype])
        op = op_of(n)
        for k in n.params:
            dt = op.param_datatype(k)
            if dt is not None:
                model.set_tensor_datatype(f"{n.name}|{k}", DataType[dt])


def to_onnx(graph: Graph, image_shape, batch: int = 1):
    """-> qonnx ModelWrapper.  ``image_shape`` is (H, W, C) of one input image."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    shapes = stream_shapes(graph, batch, image_shape)
    nodes, inits, vinfo = [], [], []
    for n in graph.nodes:
        node, consts = node_proto(n, shapes[n.inputs[0]])
        nodes.append(node)
        inits += consts
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
    annotate(model, graph.nodes)
    return model


def single_node_model(node, inputs: list, out_shape):
    """A one-node ONNX graph around ``node`` (FINN's way of testing an op): ``inputs`` are
    (shape, qonnx DataType) of its input streams, in order."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    onode, inits = node_proto(node, inputs[0][0])
    g = helper.make_graph([onode], node.name,
                          [helper.make_tensor_value_info(t, TensorProto.FLOAT, list(s))
                           for t, (s, _) in zip(node.inputs, inputs)],
                          [helper.make_tensor_value_info(node.outputs[0], TensorProto.FLOAT, list(out_shape))],
                          initializer=inits)
    model = ModelWrapper(qonnx_make_model(g, producer_name="bhvit-fpga"))
    for t, (_, dt) in zip(node.inputs, inputs):
        model.set_tensor_datatype(t, DataType[dt])
    annotate(model, [node])
    return model


def validate(model) -> None:
    """Every node must be a kernel this flow implements and every binary
    weight must be +-1; otherwise UnsupportedGraphError names the node."""
    supported = sorted(REGISTRY)
    problems = []
    for node in model.graph.node:
        cls = REGISTRY.get(node.op_type)
        if cls is None or cls.domain != node.domain:
            problems.append(f"node '{node.name}': op {node.op_type} (domain '{node.domain or 'ai.onnx'}') has no "
                            f"hardware kernel; supported: {', '.join(supported)}")
            continue
        if cls.binary_weights:
            w = model.get_initializer(f"{node.name}|{cls.binary_weights}")
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
