"""Affine: sum_i (x_i * m_i[c]) << l_i + bias, rounded once and saturated.

The fixed-point glue of the network: alpha * popcount, BN, LayerScale, shortcuts and residual
adds fold into it (hw.intnet).  A popcount input (``pc_k`` = K) first becomes the +-1 dot
product 2 x - K; the bias is per channel or per token and channel.  Kernels: hw.ops.fixed_point.
"""
from __future__ import annotations

import numpy as np

from .. import kernels as K
from .base import register
from .fixed_point import FixedPoint


@register
class Affine(FixedPoint):
    op_type = "Affine"
    attr_types = {"lshifts": "ints", "shift": "i", "bits": "i", "pc_k": "ints"}
    kind = "affine"

    def multipliers(self):
        return {f"m{i}": self.params[f"m{i}"] for i in range(len(self.node.inputs))}

    def product_multipliers(self):
        # a term whose multiplier is 1 on every channel (the fused shift unit's) is added as is
        return [m for m in (np.asarray(v) for v in self.multipliers().values()) if not np.all(m == 1)]

    def mult_keys(self, i):
        return [f"m{i}"]

    def pc_k(self, i: int) -> int:
        return self.attrs["pc_k"][i] if self.attrs.get("pc_k") else 0

    def execute(self, *xs):
        terms = []
        for i, x in enumerate(xs):
            k = self.pc_k(i)
            if k:                           # MVAU popcount of matches -> +-1 dot product
                x = 2 * x - k
            terms.append((x, self.params[f"m{i}"], self.attrs["lshifts"][i]))
        return [K.affine_sum(terms, self.params["bias"], self.attrs["shift"], self.attrs["bits"])]

    def terms(self, xs, mult):
        acc = 0
        for i, x in enumerate(xs):
            k = self.pc_k(i)
            if k:
                x = 2 * x - k
            acc = acc + mult(i, x)
        return acc

    def torch_forward(self, net, *xs):
        from ..torch_form import rshift_round, saturate
        a = self.attrs
        acc = self.terms(xs, lambda i, x: x * net.p(self.node, f"m{i}") * 2.0 ** a["lshifts"][i])
        acc = acc + net.p(self.node, "bias")
        return saturate(rshift_round(acc, a["shift"]), a["bits"])

    def qonnx_forward(self, net, *xs):
        a = self.attrs
        acc = self.terms(xs, lambda i, x: x * (net.c(self.node, f"m{i}") * 2.0 ** a["lshifts"][i]))
        return self.requant(net, acc + net.c(self.node, "bias"))

    def intnet_params(self, vals):
        return {"m": [vals[f"m{i}"] for i in range(len(self.node.inputs))], "bias": vals["bias"]}
