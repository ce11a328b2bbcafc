"""The project's ONNX custom ops (domain ``hw.custom_op``) for qonnx/FINN.

qonnx finds the ops of a node's domain by importing the module of that name, so every op of
this domain in the registry (:mod:`hw.ops`) gets a :class:`qonnx.custom_op.base.CustomOp`
class here.  Each one declares its op's attributes, gives shape inference a stand-in node of
its output shape, annotates its output with the qonnx DataType the graph builder derived from
value bounds, and executes with its op's golden model (:meth:`hw.ops.HwOp.execute`).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from onnx import TensorProto
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from ..execute import execute
from ..graph import DOMAIN
from ..ops import REGISTRY

COMMON = {
    "PE": ("i", False, 1),
    "out_dtype": ("s", True, ""),
    "param_names": ("strings", False, []),
    "backend": ("s", False, "fpgadataflow"),
}


def declared_type(graph, name):
    for vi in list(graph.value_info) + list(graph.output):
        if vi.name == name:
            return vi.type.tensor_type.elem_type
    return None


class HwCustomOp(CustomOp):
    """A registry op as a qonnx CustomOp (one subclass per op type below)."""
    op_type = ""

    @property
    def attr_types(self) -> dict:
        return REGISTRY[self.op_type].attr_types

    def get_nodeattr_types(self):
        d = dict(COMMON)
        optional = REGISTRY[self.op_type].optional_attrs
        for k, t in self.attr_types.items():
            d[k] = (t, k not in optional, [] if t == "ints" else ("" if t == "s" else 0))
        return d

    def node_attrs(self) -> dict:
        return {k: self.get_nodeattr(k) for k in self.attr_types}

    def make_shape_compatible_op(self, model):
        shape = model.get_tensor_shape(self.onnx_node.output[0])
        if shape is None:
            raise ValueError(f"{self.onnx_node.name}: output shape unknown; export sets it on every stream")
        return self.make_const_shape_op(shape)

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType[self.get_nodeattr("out_dtype")])

    def execute_node(self, context, graph):
        node = self.onnx_node
        names = list(self.get_nodeattr("param_names"))
        n_data = len(node.input) - len(names)
        params = {k: np.asarray(context[i]).astype(np.int64) for k, i in zip(names, node.input[n_data:])}
        stand_in = SimpleNamespace(op=self.op_type, name=node.name, attrs=self.node_attrs(), params=params,
                                   inputs=list(node.input[:n_data]), outputs=list(node.output),
                                   dtype=self.get_nodeattr("out_dtype"))
        outs = execute(stand_in, [context[i] for i in node.input[:n_data]])
        for name, y in zip(node.output, outs):
            # In a graph exported from PyTorch (hw.qonnx_export) the neighbours are standard
            # ONNX ops run by ONNX Runtime, which insists on the declared element type.
            if declared_type(graph, name) == TensorProto.DOUBLE:
                y = np.asarray(y, dtype=np.float64)
            context[name] = y

    def verify_node(self):
        msgs = []
        for k in self.attr_types:
            try:
                self.get_nodeattr(k)
            except Exception as exc:  # noqa: BLE001 - report, do not raise
                msgs.append(f"{self.onnx_node.name}: attribute {k}: {exc}")
        return msgs


custom_op = {name: type(name, (HwCustomOp,), {"op_type": name, "__module__": __name__,
                                              "__doc__": f"{name} kernel (see hw.ops)."})
             for name, cls in REGISTRY.items() if cls.domain == DOMAIN}
