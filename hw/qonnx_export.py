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

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import kernels as K
from .graph import DOMAIN
from .qat import DT, TorchIntNet, _map, _tok, split_heads


def int_quant(bits: int, name: str = "") -> nn.Module:
    """Brevitas signed ``bits``-bit quantizer with scale 1 and FLOOR rounding:
    exported as ``Quant(x, scale=1, zeropt=0, bitwidth=bits, rounding_mode=FLOOR)``."""
    from brevitas.inject.enum import FloatToIntImplType, ScalingImplType
    from brevitas.nn import QuantIdentity
    from brevitas.quant import Int8ActPerTensorFloat
    lim = float(2 ** (bits - 1))
    return QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=bits, scaling_impl_type=ScalingImplType.CONST,
                         min_val=-lim, max_val=lim, float_to_int_impl_type=FloatToIntImplType.FLOOR,
                         return_quant_tensor=False)


def binary_act() -> nn.Module:
    from brevitas.nn import QuantIdentity
    from brevitas.quant import SignedBinaryActPerTensorConst
    return QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=False)


class QonnxIntNet(TorchIntNet):
    """The integer network with Brevitas quantizers, exportable by ``export_qonnx``.

    Built from an :class:`hw.intnet.IntNet` (or from a trained
    :class:`TorchIntNet`: its current rounded parameters are taken), eval only.
    ``forward`` takes float64 NCHW images holding uint8 values."""

    def __init__(self, net, source: TorchIntNet | None = None):
        super().__init__(net)
        src = source if source is not None else self
        self.quant = nn.ModuleDict()
        self.layer = nn.ModuleDict()
        self._const: dict = {}
        with torch.no_grad():
            for node in self.graph.nodes:
                for k in node.params:
                    key = self._key(node.name, k)
                    v = TorchIntNet.p(src, node, k).detach().to(DT).clone()
                    self.register_buffer("c__" + key, v)
                self._build(node)
        del self.theta                       # only the exact constants remain
        self.to(DT)
        # ONNX Runtime has no float64 Conv; binary convolutions are exact in float32 anyway
        # (sums of +-1 products stay far below 2**24), so they run in float32.
        for key, layer in self.layer.items():
            if isinstance(layer, nn.Conv2d):
                layer.float()
        self.exporting = False

    # ------------------------------------------------------------------ construction
    def _build(self, node):
        from brevitas.nn import QuantConv2d, QuantLinear
        from brevitas.quant import SignedBinaryWeightPerTensorConst
        key = self._key(node.name, "q")
        a = node.attrs
        if node.op in ("Affine", "RPReLU"):
            self.quant[key] = int_quant(a["bits"])
        elif node.op == "Thresholding":
            self.quant[key] = binary_act()
        elif node.op in ("IntConv2d", "IntLinear"):
            self.quant[key] = int_quant(8)      # 8-bit integer weights (the folder clamps them to +-127)
        elif node.op == "MVAU":
            w = self.c(node, "weights")                                   # (MW, MH) +-1
            lin = QuantLinear(w.shape[0], w.shape[1], bias=False, weight_quant=SignedBinaryWeightPerTensorConst,
                              weight_scaling_const=1.0, return_quant_tensor=False)
            lin.weight.data = w.T.contiguous().to(torch.float32)
            self.layer[key] = lin
        elif node.op == "XnorConv2d":
            w = self.c(node, "w")                                         # (O, I/g, k, k) +-1
            conv = QuantConv2d(w.shape[1] * a["groups"], w.shape[0], w.shape[-1], stride=a["stride"],
                               padding=a["pad"], dilation=a["dilation"], groups=a["groups"], bias=False,
                               weight_quant=SignedBinaryWeightPerTensorConst, weight_scaling_const=1.0,
                               return_quant_tensor=False)
            conv.weight.data = w.contiguous().to(torch.float32)
            self.layer[key] = conv

    def c(self, node, k):
        return getattr(self, "c__" + self._key(node.name, k))

    def p(self, node, k, rounded=True):
        return self.c(node, k)

    def _requant(self, node, acc):
        """round half up (acc * 2**-shift) and saturate: one Brevitas FLOOR quantizer."""
        s = node.attrs["shift"]
        v = acc * 2.0 ** -s + (0.5 if s > 0 else 0.0)
        return self.quant[self._key(node.name, "q")](v)

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _input_nhwc(image):
        # a tensor (possibly a tracing stand-in during export): no numpy round trip
        return image.to(DT).permute(0, 2, 3, 1)

    def op_IntConv2d(self, n, x):
        w = self.quant[self._key(n.name, "q")](self.c(n, "w"))
        # float32 Conv (ONNX Runtime has no float64 one): exact while 255 * 127 * fan-in < 2**24
        if 255 * 127 * w[0].numel() >= 2 ** 24:
            raise ValueError(f"{n.name}: stem fan-in {w[0].numel()} too large for an exact float32 Conv")
        y = F.conv2d(x.permute(0, 3, 1, 2).float(), w.float(), stride=n.attrs["stride"])
        return _tok(y.to(DT))

    def op_IntLinear(self, n, x):
        w = self.quant[self._key(n.name, "q")](self.c(n, "w"))
        return x @ w.T + self.c(n, "bias")

    def op_Affine(self, n, *xs):
        a = n.attrs
        acc = 0
        for i, x in enumerate(xs):
            k = a["pc_k"][i] if a.get("pc_k") else 0
            if k:
                x = 2 * x - k
            acc = acc + x * (self.c(n, f"m{i}") * 2.0 ** a["lshifts"][i])
        return self._requant(n, acc + self.c(n, "bias"))

    def op_RPReLU(self, n, z):
        y = torch.where(z >= 0, z * self.c(n, "m_pos"), z * self.c(n, "m_neg")) + self.c(n, "bias")
        return self._requant(n, y)

    def op_Lut(self, n, x):
        lo = -(1 << (n.attrs["in_bits"] - 1))
        return self.c(n, "table")[(x - lo).long()]

    def op_Thresholding(self, n, x):
        return self.quant[self._key(n.name, "q")](x - self.c(n, "thresholds")[:, 0])

    def op_MVAU(self, n, x):
        # the +-1 dot product, then the popcount of matches that FINN's MVAU outputs
        return (self.layer[self._key(n.name, "q")](x) + n.attrs["MW"]) * 0.5

    def op_XnorConv2d(self, n, xb):
        a = n.attrs
        return _tok(self.layer[self._key(n.name, "q")](_map(xb, a["H"], a["W"]).float()).to(DT))

    def op_QDAttention(self, n, qb, kb, vb):
        a = n.attrs
        heads, levels = a["heads"], a["levels"]

        q, k, v = (split_heads(t, heads) for t in (qb, kb, vb))
        d = q.shape[-1]
        e = self.c(n, "table")[(q @ k.transpose(-1, -2) + d).long()]      # exp table of the 2d+1 scores
        total = e.sum(-1, keepdim=True)
        lev = sum(((2 * levels) * e >= (2 * sigma - 1) * total).to(DT) for sigma in range(1, levels + 1))
        return (lev @ v).transpose(1, 2).reshape(qb.shape)

    def op_IntLayerNorm(self, n, x):
        a = n.attrs
        gmul, bias = self.c(n, "gmul"), self.c(n, "bias")
        if self.exporting:
            return torch.onnx.ops.symbolic(
                f"{DOMAIN}::IntLayerNorm", (x, gmul, bias),
                attrs=dict(eps=int(a["eps"]), r_bits=int(a["r_bits"]), shift=int(a["shift"]), bits=int(a["bits"]),
                           out_dtype=n.dtype, param_names=["gmul", "bias"]),
                dtype=x.dtype, shape=x.shape, version=1)
        y = K.layernorm_int(x.numpy().astype(np.int64), gmul.numpy().astype(np.int64),
                            bias.numpy().astype(np.int64), a["eps"], a["r_bits"], a["shift"], a["bits"])
        return torch.as_tensor(y, dtype=DT)


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
