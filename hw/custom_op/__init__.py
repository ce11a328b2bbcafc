"""The project's ONNX custom ops (domain ``hw.custom_op``) for qonnx/FINN.

qonnx finds the ops of a node's domain by importing the module of that name,
so every op of :data:`hw.ops.ATTRS` gets a :class:`qonnx.custom_op.base.CustomOp`
class here.  Each one declares its attributes, gives shape inference a
stand-in node of its output shape, annotates its output with the qonnx
DataType the graph builder derived from value bounds, and executes with the
golden semantics of :func:`hw.ops.execute`.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from qonnx.core.datatype import DataType
from onnx import TensorProto
from qonnx.custom_op.base import CustomOp

from ..ops import ATTRS, execute

COMMON = {
    "PE": ("i", False, 1),
    "out_dtype": ("s", True, ""),
    "param_names": ("strings", False, []),
    "backend": ("s", False, "fpgadataflow"),
}


def _declared_type(graph, name):
    for vi in list(graph.value_info) + list(graph.output):
        if vi.name == name:
            return vi.type.tensor_type.elem_type
    return None


class _HwOp(CustomOp):
    op_type = ""

    def get_nodeattr_types(self):
        d = dict(COMMON)
        for k, t in ATTRS[self.op_type].items():
            d[k] = (t, True, [] if t == "ints" else ("" if t == "s" else 0))
        return d

    def _attrs(self) -> dict:
        return {k: self.get_nodeattr(k) for k in ATTRS[self.op_type]}

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
        stand_in = SimpleNamespace(op=self.op_type, name=node.name, attrs=self._attrs(), params=params)
        outs = execute(stand_in, [context[i] for i in node.input[:n_data]])
        for name, y in zip(node.output, outs):
            # In a graph exported from PyTorch (hw.qonnx_export) the neighbours are standard
            # ONNX ops run by ONNX Runtime, which insists on the declared element type.
            if _declared_type(graph, name) == TensorProto.DOUBLE:
                y = np.asarray(y, dtype=np.float64)
            context[name] = y

    def verify_node(self):
        msgs = []
        for k in ATTRS[self.op_type]:
            try:
                self.get_nodeattr(k)
            except Exception as exc:  # noqa: BLE001 - report, do not raise
                msgs.append(f"{self.onnx_node.name}: attribute {k}: {exc}")
        return msgs


custom_op = {name: type(name, (_HwOp,), {"op_type": name, "__module__": __name__,
                                         "__doc__": f"{name} kernel (see hw.ops)."})
             for name in ATTRS}
