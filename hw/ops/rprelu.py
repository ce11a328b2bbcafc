"""RPReLU: (z >= 0 ? z * m_pos[c] : z * m_neg[c]) + bias, rounded once and saturated.

BHViT's RPReLU after its shift gamma folded into the producer: the two slopes as per-channel
multipliers (m_pos the fixed 2**M), zeta (and a position embedding after a downsampling) as the
bias.  Kernels: hw.ops.fixed_point.
"""
from __future__ import annotations

from .. import kernels as K
from .base import register
from .fixed_point import FixedPoint


@register
class RPReLU(FixedPoint):
    op_type = "RPReLU"
    kind = "rprelu"

    def multipliers(self):
        return {"m_pos": self.params["m_pos"], "m_neg": self.params["m_neg"]}

    def product_multipliers(self):
        return list(self.multipliers().values())

    def mult_keys(self, i):
        return ["m_pos", "m_neg"]

    def dsps(self):
        return self.pe               # one product per lane, its multiplier chosen by the sign

    def execute(self, z):
        p, a = self.params, self.attrs
        return [K.rprelu(z, p["m_pos"], p["m_neg"], p["bias"], a["shift"], a["bits"])]

    def torch_forward(self, net, z):
        import torch

        from ..torch_form import rshift_round, saturate
        p = lambda k: net.p(self.node, k)      # noqa: E731
        y = torch.where(z >= 0, z * p("m_pos"), z * p("m_neg")) + p("bias")
        return saturate(rshift_round(y, self.attrs["shift"]), self.attrs["bits"])

    def qonnx_forward(self, net, z):
        import torch
        c = lambda k: net.c(self.node, k)      # noqa: E731
        return self.requant(net, torch.where(z >= 0, z * c("m_pos"), z * c("m_neg")) + c("bias"))

    def qat_role(self, key):
        return "table" if key == "m_pos" else "value"      # the fixed 2**M

    def intnet_params(self, vals):
        return {"m_neg": vals["m_neg"], "bias": vals["bias"]}
