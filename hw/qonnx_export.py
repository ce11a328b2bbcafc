"""Brevitas ``export_qonnx`` of the hardware-exact network, and its QONNX execution.

:class:`QonnxIntNet` is :class:`hw.qat.TorchIntNet` (the PyTorch form of the
integer dataflow graph) with the hardware's arithmetic written so that
Brevitas exports it to QONNX as quantizers and standard ONNX ops:

* every requantiser (the single rounding of an affine / RPReLU node) is a
  Brevitas ``QuantIdentity`` with scale 1, ``FLOOR`` rounding and the node's
  bit width, applied to ``acc * 2**-s + 1/2``: round half up and saturation,
  exported as a QONNX ``Quant`` node;
* every sign with a learnable bias is a Brevitas binary ``QuantIdentity`` on
  ``x - t`` (``BipolarQuant``; sign(0) = +1 on both sides);
* every binary layer is a Brevitas ``QuantLinear`` / ``QuantConv2d`` whose
  weights go through ``BipolarQuant``; the stem and classifier weights
  through an 8-bit ``Quant``;
* the GELU table and the exp table of QD attention are ``Gather`` s, the QD
  levels integer compares, the token reshuffles Transpose / Reshape / Slice.

The one exception is the integer LayerNorm: it needs an exact integer square
root and an integer division of up to 62-bit numbers, and torch's ONNX
exporter lowers integer division through float32 (``Cast, Div, Floor``), which
is not exact.  It is exported as this project's ``hw.custom_op::IntLayerNorm``
node, executed by :mod:`hw.custom_op` with the golden kernel.

Every tensor is float64 holding integers below 2**53 (the accumulators are
bounded by 2**48), so ONNX Runtime and qonnx's numpy execution of ``Quant``
compute exact integers.  The graph carries the integer codes of every stream
(Quant scale 1); a stream's binary point is the one of the integer network.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .ops import op_of
from .qat import TorchIntNet
from .torch_form import DT


class QonnxIntNet(TorchIntNet):
    """The integer network with Brevitas quantizers, exportable by ``export_qonnx``: every node
    runs its op's QONNX form (:meth:`hw.ops.HwOp.qonnx_forward`) with the Brevitas modules the
    op asks for (:meth:`hw.ops.HwOp.qonnx_modules`).

    Built from an :class:`hw.intnet.IntNet` (or from a trained
    :class:`TorchIntNet`: its current rounded parameters are taken), eval only.
    ``forward`` takes float64 NCHW images holding uint8 values."""

    def __init__(self, net, source: TorchIntNet | None = None):
        super().__init__(net)
        src = source if source is not None else self
        self.quant = nn.ModuleDict()         # requantisers and weight quantizers
        self.layer = nn.ModuleDict()         # binary layers with their weights
        with torch.no_grad():
            for node in self.graph.nodes:
                for k in node.params:
                    key = self._key(node.name, k)
                    v = TorchIntNet.p(src, node, k).detach().to(DT).clone()
                    self.register_buffer("c__" + key, v)
                for kind, module in op_of(node).qonnx_modules(self).items():
                    getattr(self, kind)[self._key(node.name, "q")] = module
        del self.theta                       # only the exact constants remain
        self.to(DT)
        # ONNX Runtime has no float64 Conv; binary convolutions are exact in float32 anyway
        # (sums of +-1 products stay far below 2**24), so they run in float32.
        for layer in self.layer.values():
            if isinstance(layer, nn.Conv2d):
                layer.float()
        self.exporting = False

    def c(self, node, k):
        """The exact constant ``k`` of ``node`` (float64)."""
        return getattr(self, "c__" + self._key(node.name, k))

    def p(self, node, k, rounded=True):
        return self.c(node, k)

    def module_of(self, node):
        """The Brevitas module of ``node`` (its requantiser, quantizer or binary layer)."""
        key = self._key(node.name, "q")
        return self.quant[key] if key in self.quant else self.layer[key]

    @staticmethod
    def _input_nhwc(image):
        # a tensor (possibly a tracing stand-in during export): no numpy round trip
        return image.to(DT).permute(0, 2, 3, 1)

    def run_node(self, node, *xs):
        return op_of(node).qonnx_forward(self, *xs)


# ---------------------------------------------------------------------- export + execution
_NP = {1: np.float32, 11: np.float64}
_ONNX = {np.dtype(np.float32): 1, np.dtype(np.float64): 11}


def insert_container_casts(model):
    """A graph pass: make the declared element type of every Quant / BipolarQuant
    output the one qonnx's execution produces, casting back to what the exporter
    declared.  qonnx stores a Quant result in a float32 container (exact here,
    since no requantiser is wider than 24 bits) and a BipolarQuant result in
    numpy's promotion of its input and scale types; the standard ops after
    them run in ONNX Runtime, which insists on the declared type."""
    from onnx import helper
    g = model.graph
    i = 0
    while i < len(g.node):
        node = g.node[i]
        i += 1
        if node.op_type not in ("Quant", "BipolarQuant"):
            continue
        out = node.output[0]
        declared = model.get_tensor_valueinfo(out).type.tensor_type.elem_type
        if node.op_type == "Quant":
            bits = float(np.asarray(model.get_initializer(node.input[3])))
            if bits > 24:
                raise ValueError(f"{node.name}: a {bits:.0f}-bit Quant is not exact in qonnx's float32 container")
            produced = np.dtype(np.float32)
        else:
            types = [_NP[model.get_tensor_valueinfo(t).type.tensor_type.elem_type] for t in node.input[:2]]
            produced = np.result_type(*types)
        if _ONNX[produced] == declared:
            continue
        mid = out + "_container"
        node.output[0] = mid
        shape = model.get_tensor_shape(out)
        g.value_info.append(helper.make_tensor_value_info(mid, _ONNX[produced], shape))
        g.node.insert(i, helper.make_node("Cast", [mid], [out], to=declared, name=node.name + "_cast"))
        i += 1
    return model


def clean(model):
    """qonnx's cleanup without its tensor renaming (GiveReadableTensorNames
    leaves the old name on the second input of a node that reads one tensor
    twice, e.g. Mul(x, x))."""
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import GiveUniqueNodeNames, RemoveStaticGraphInputs, RemoveUnusedTensors
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    import hw.custom_op  # noqa: F401  (qonnx finds the IntLayerNorm class by its domain)
    for t in (InferShapes(), FoldConstants(), GiveUniqueNodeNames(), RemoveStaticGraphInputs(),
              RemoveUnusedTensors(), InferShapes(), InferDataTypes()):
        model = model.transform(t)
    model.check_all_tensor_shapes_specified(fix_missing_init_shape=True)
    return model


def export(net, path, batch: int, source: TorchIntNet | None = None):
    """Brevitas ``export_qonnx`` of the integer network for a fixed batch size,
    then qonnx clean-up; writes ``path`` and returns the qonnx ModelWrapper."""
    import warnings

    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    m = QonnxIntNet(net, source).eval()
    c = net.cfg.in_chans
    s = net.cfg.img_size
    x = torch.zeros(batch, c, s, s, dtype=DT)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".raw.onnx")
    m.exporting = True
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            export_qonnx(m, (x,), str(tmp), dynamo=True, verbose=False)
    finally:
        m.exporting = False
    model = clean(insert_container_casts(clean(ModelWrapper(str(tmp)))))
    tmp.unlink(missing_ok=True)
    tmp.with_suffix(".raw.onnx.data").unlink(missing_ok=True)
    part = path.with_suffix(".onnx.part")            # written whole, then renamed: never half a file
    model.save(str(part))
    part.replace(path)
    return model


def execute(model, images_u8) -> np.ndarray:
    """qonnx ``execute_onnx`` of the exported graph (Quant / BipolarQuant by
    qonnx, standard ops by ONNX Runtime node by node): uint8 NCHW -> int64 logits."""
    from qonnx.core.onnx_exec import execute_onnx
    inp, out = model.graph.input[0].name, model.graph.output[0].name
    y = execute_onnx(model, {inp: np.asarray(images_u8, dtype=np.float64)})[out]
    y = np.asarray(y, dtype=np.float64)
    if not np.array_equal(y, np.rint(y)):
        raise ValueError("the QONNX graph produced non-integer logits")
    return y.astype(np.int64)


def op_histogram(model) -> dict:
    out: dict = {}
    for node in model.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def verify(net, images_u8, golden_logits, path, batch: int = 50, progress: bool = True) -> dict:
    """Export once for ``batch`` images, execute the QONNX file on every chunk,
    compare the logits with the golden ones (np.array_equal)."""
    from tqdm import tqdm
    images_u8 = np.asarray(images_u8)
    n = len(images_u8) - len(images_u8) % batch if len(images_u8) >= batch else len(images_u8)
    batch = min(batch, len(images_u8))
    model = export(net, path, batch)
    checked = 0
    for i in tqdm(range(0, n, batch), desc="qonnx vs golden", unit="batch", disable=not progress):
        got = execute(model, images_u8[i:i + batch])
        if not np.array_equal(got, golden_logits[i:i + batch]):
            bad = int(np.argwhere((got != golden_logits[i:i + batch]).any(1))[0, 0])
            return dict(equal=False, images=checked, first_difference_image=i + bad, ops=op_histogram(model))
        checked += batch
    return dict(equal=True, images=checked, nodes=len(model.graph.node), ops=op_histogram(model), file=str(path))
