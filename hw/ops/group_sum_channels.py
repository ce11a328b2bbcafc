"""GroupSumChannels: the sum of each group of RATIO consecutive channels (the MLP's channel-pool
shortcut; the 1/RATIO of the mean folds into the Affine that follows).

HLS: ``bhvit::group_sum_channels`` (bhvit_tokens.hpp); RTL: group_sum_channels.sv.j2.
"""
from __future__ import annotations

import math

from .. import hls, rtl
from .. import kernels as K
from ..resources import CONTROL_LUTS, counter_bits
from .base import HwOp, check_fold, register


@register
class GroupSumChannels(HwOp):
    op_type = "GroupSumChannels"
    attr_types = {"ratio": "i"}

    def execute(self, x):
        return [K.group_sum_channels(x, self.attrs["ratio"])]

    def torch_forward(self, net, x):
        *lead, c = x.shape
        r = self.attrs["ratio"]
        return x.reshape(*lead, c // r, r).sum(-1)

    def cost(self, io):
        cycles = math.ceil(max(io.ins[0].elems, io.out.elems) / self.pe)
        return dict(cycles=int(cycles), mem_bits=0, bram36=0, luts=int(CONTROL_LUTS + self.pe * io.out.bits), dsps=0)

    def streams(self, io):
        c = io.out.width
        check_fold(self.name, "PE", c, self.pe)
        i, o = io.ins[0], io.out
        return (c * self.attrs["ratio"], hls.stream(c * self.attrs["ratio"], self.pe, i.bits, i.signed),
                hls.stream(c, self.pe, o.bits, o.signed))

    def hls(self, io):
        cin, s_in, s_out = self.streams(io)
        i = io.ins[0]
        return hls.kernel_node(self.name, "group_sum_channels",
                               [cin, self.pe, i.bits, hls.cpp_bool(i.signed), io.out.bits, self.attrs["ratio"]],
                               [s_in], s_out)

    def rtl(self, io):
        cin, s_in, s_out = self.streams(io)
        pe, ratio, i = self.pe, self.attrs["ratio"], io.ins[0]
        module = rtl.module_name("gsum", self.name)
        src = rtl.render("group_sum_channels.sv.j2", node=self.name, module=module, c=cin, cf=cin // pe, pe=pe,
                         ib=i.bits, signed=i.signed, ob=io.out.bits, ratio=ratio, rw=counter_bits(ratio))
        return rtl.RtlKernel(self.name, module, src, [s_in], s_out)
