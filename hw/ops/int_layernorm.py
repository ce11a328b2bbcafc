"""IntLayerNorm: MSMHA's integer LayerNorm of each token (an exact isqrt and one division per
token, then a per-channel multiplier and bias; hw/kernels/attention.py layernorm_int).

HLS: ``bhvit::layernorm`` (bhvit_attention.hpp); RTL: layernorm.sv.j2 (a sequential root and
divider per token; reading, statistics and output of three tokens overlap, so a token takes
max(C/PE, 2 r_bits + 5) cycles).
"""
from __future__ import annotations

import math

import numpy as np

from .. import hls, rtl
from .. import kernels as K
from ..graph import DOMAIN
from ..resources import CONTROL_LUTS, counter_bits, memory_cost, value_bits
from .base import HwOp, check_fold, prod, register


@register
class IntLayerNorm(HwOp):
    op_type = "IntLayerNorm"
    attr_types = {"eps": "i", "r_bits": "i", "shift": "i", "bits": "i"}
    ready_registered = True

    def golden(self, x, gmul, bias):
        a = self.attrs
        return K.layernorm_int(x, gmul, bias, a["eps"], a["r_bits"], a["shift"], a["bits"])

    def execute(self, x):
        return [self.golden(x, self.params["gmul"], self.params["bias"])]

    def torch_forward(self, net, x):
        import torch

        from ..torch_form import DT, exact_with_surrogate
        a = self.attrs
        gmul, bias = net.p(self.node, "gmul"), net.p(self.node, "bias")
        exact = self.golden(x.detach().numpy().astype(np.int64), gmul.detach().numpy().astype(np.int64),
                            bias.detach().numpy().astype(np.int64))
        c = x.shape[-1]
        d = c * x - x.sum(-1, keepdim=True)
        v = (d * d).sum(-1, keepdim=True)
        sur = (d * 2.0 ** a["r_bits"] / torch.sqrt(v + a["eps"] + 1.0) * gmul + bias) * 2.0 ** -a["shift"]
        return exact_with_surrogate(torch.as_tensor(exact, dtype=DT), sur)

    def intnet_params(self, vals):
        return {"gmul": vals["gmul"], "bias": vals["bias"]}

    def qonnx_forward(self, net, x):
        """An exact integer square root and a division of up to 62-bit numbers, which torch's ONNX
        exporter lowers through float32: exported as this project's hw.custom_op::IntLayerNorm."""
        import torch

        from ..torch_form import DT
        a = self.attrs
        gmul, bias = net.c(self.node, "gmul"), net.c(self.node, "bias")
        if net.exporting:
            return torch.onnx.ops.symbolic(
                f"{DOMAIN}::IntLayerNorm", (x, gmul, bias),
                attrs=dict(eps=int(a["eps"]), r_bits=int(a["r_bits"]), shift=int(a["shift"]), bits=int(a["bits"]),
                           out_dtype=self.node.dtype, param_names=["gmul", "bias"]),
                dtype=x.dtype, shape=x.shape, version=1)
        y = self.golden(x.numpy().astype(np.int64), gmul.numpy().astype(np.int64), bias.numpy().astype(np.int64))
        return torch.as_tensor(y, dtype=DT)

    def cost(self, io):
        a, pe = self.attrs, self.pe
        out = io.out.shape
        tokens, c, out_bits = out[-2], out[-1], io.out.bits
        # the RTL kernel's three stages overlap (one token each): the read, the bit-serial root
        # and divider (2 R + 5 cycles), the normalising pass; the slowest sets the pace.  The
        # HLS kernel is one loop per token (its C simulation checks bits, not cycles).
        cycles = prod(out[:-2]) * tokens * max(math.ceil(c / pe), 2 * a["r_bits"] + 5)
        mem = c * (16 + out_bits) + 3 * c * io.ins[0].bits           # parameters + three buffered tokens
        bram, lut_mem, mem = memory_cost(mem)
        # isqrt + divider per token, the three stages' hand-over registers and slot addressing
        # (Yosys: 962 / 994 LUTs for the shipped stage-2 / stage-3 kernels at PE 1)
        luts = CONTROL_LUTS + pe * 64 + 700
        # per lane x^2, D x 1/root (two DSP48s: wider than 25 x 18) and the gain; per token S^2 and
        # C Q: Yosys maps 9 at PE = 1 and 16 at PE = 2 for the shipped stage-3 / stage-2 kernels
        return dict(cycles=int(cycles), mem_bits=int(mem), bram36=bram, luts=int(luts + lut_mem), dsps=7 * pe + 2)

    def delay(self):
        return 0, 1          # a whole token before its first output

    def checked(self, io):
        a = self.attrs
        gmul = np.asarray(self.params["gmul"], dtype=np.int64).reshape(-1)
        c = gmul.size
        bias = np.broadcast_to(np.asarray(self.params["bias"], dtype=np.int64).reshape(-1), (c,))
        check_fold(self.name, "PE", c, self.pe)
        if a["eps"] < 0 or a["r_bits"] < 1:
            raise ValueError(f"{self.name}: eps {a['eps']} and r_bits {a['r_bits']} must be non-negative / positive")
        # |D * inv| <= 2^R (see the kernel), so this bounds the accumulator
        acc_bits = ((1 << a["r_bits"]) * int(np.abs(gmul).max(initial=0))
                    + int(np.abs(bias).max(initial=0))).bit_length() + 2
        return gmul, bias, c, acc_bits

    def hls(self, io):
        gmul, bias, c, acc_bits = self.checked(io)
        a, pe, i = self.attrs, self.pe, io.ins[0]
        tables = [hls.int_table("g", gmul, (pe, c // pe), hls.lanes_init(gmul, pe)),
                  hls.int_table("b", bias, (pe, c // pe), hls.lanes_init(bias, pe))]
        return hls.kernel_node(self.name, "layernorm",
                               [c, pe, i.bits, hls.cpp_bool(i.signed), a["bits"], a["r_bits"], a["shift"],
                                f"{int(a['eps'])}ULL", acc_bits],
                               [hls.stream(c, pe, i.bits, i.signed)], hls.stream(c, pe, a["bits"], True), tables)

    def rtl(self, io):
        gmul, bias, c, ab = self.checked(io)
        a, pe, i = self.attrs, self.pe, io.ins[0]
        in_bits, shift, eps = i.bits, int(a["shift"]), int(a["eps"])
        lc = c.bit_length()
        vw = 2 * in_bits + 3 * lc + 2
        # the bias table holds bias + 2^(SHIFT-1): the rounding constant rides on the bias add
        bias_r = bias + (1 << (shift - 1) if shift > 0 else 0)
        gb, bb = value_bits(gmul), value_bits(bias_r)
        module = rtl.module_name("ln", self.name)
        src = rtl.render("layernorm.sv.j2", node=self.name, module=module, c=c, pe=pe, cf=c // pe, ib=in_bits,
                         signed=i.signed, ob=a["bits"], r=a["r_bits"], shift=shift, eps=eps, sb=in_bits + lc + 1,
                         qb=2 * in_bits + lc, vw=vw, veb=max(vw, eps.bit_length()) + 1, db=in_bits + lc + 2, ab=ab,
                         yw=max(ab + 2 + max(-shift, 0), a["bits"] + 1), gb=gb, bb=bb,
                         g_rom=rtl.lanes_rom(gmul, pe, gb), b_rom=rtl.lanes_rom(bias_r, pe, bb), bits=counter_bits)
        return rtl.RtlKernel(self.name, module, src, [hls.stream(c, pe, in_bits, i.signed)],
                             hls.stream(c, pe, a["bits"], True))
