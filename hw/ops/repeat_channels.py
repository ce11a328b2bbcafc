"""RepeatChannels: out row = RATIO copies of the input row (the MLP's and the binary
downsampling's channel-repeat shortcut: channel j of the output is input channel j mod C).

HLS: ``bhvit::repeat_channels`` (bhvit_tokens.hpp); RTL: repeat_channels.sv.j2 (a CF-word row
buffer, so its input ready is a register's).
"""
from __future__ import annotations

import math

from .. import hls, rtl
from .. import kernels as K
from ..resources import CONTROL_LUTS, counter_bits
from .base import HwOp, check_fold, register


@register
class RepeatChannels(HwOp):
    op_type = "RepeatChannels"
    attr_types = {"ratio": "i"}
    ready_registered = True

    def execute(self, x):
        return [K.repeat_channels(x, self.attrs["ratio"])]

    def torch_forward(self, net, x):
        import torch
        return torch.cat([x] * self.attrs["ratio"], dim=-1)

    def fold_dims(self, io):
        return {"PE": io.ins[0].width}        # PE input channels per word: the copies follow them

    def cost(self, io):
        cycles = math.ceil(max(io.ins[0].elems, io.out.elems) / self.pe)
        return dict(cycles=int(cycles), mem_bits=0, bram36=0, luts=int(CONTROL_LUTS + self.pe * io.out.bits), dsps=0)

    def streams(self, io):
        cin = io.out.width // self.attrs["ratio"]
        check_fold(self.name, "PE", cin, self.pe)
        s = hls.stream(cin, self.pe, io.ins[0].bits, io.ins[0].signed)
        return cin, s, hls.stream(io.out.width, self.pe, io.ins[0].bits, io.ins[0].signed)

    def hls(self, io):
        cin, s_in, s_out = self.streams(io)
        return hls.kernel_node(self.name, "repeat_channels", [cin, self.pe, io.ins[0].bits, self.attrs["ratio"]],
                               [s_in], s_out)

    def rtl(self, io):
        cin, s_in, s_out = self.streams(io)
        pe, ratio = self.pe, self.attrs["ratio"]
        module = rtl.module_name("rep", self.name)
        src = rtl.render("repeat_channels.sv.j2", node=self.name, module=module, c=cin, cf=cin // pe,
                         cfw=counter_bits(cin // pe), aw=counter_bits(2 * cin // pe), pe=pe, b=io.ins[0].bits,
                         ratio=ratio, rw=counter_bits(ratio))
        return rtl.RtlKernel(self.name, module, src, [s_in], s_out)
