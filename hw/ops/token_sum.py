"""TokenSum: the sum over the tokens of an image (the head's mean pooling; the 1/N folds into
the classifier's scale).

HLS: ``bhvit::token_sum`` (bhvit_tokens.hpp); RTL: token_sum.sv.j2 (CF accumulator words, the
last token's words emitted directly: N x CF cycles per image).
"""
from __future__ import annotations

import math

from .. import hls, rtl
from ..resources import CONTROL_LUTS, counter_bits
from .base import HwOp, check_fold, register


@register
class TokenSum(HwOp):
    op_type = "TokenSum"

    def execute(self, x):
        return [x.sum(1)]

    def torch_forward(self, net, x):
        return x.sum(1)

    def cost(self, io):
        cycles = math.ceil(max(io.ins[0].elems, io.out.elems) / self.pe)
        return dict(cycles=int(cycles), mem_bits=0, bram36=0, luts=int(CONTROL_LUTS + self.pe * io.out.bits), dsps=0)

    def delay(self):
        return 1, 0          # its output after the image's last token

    def streams(self, io):
        c, tokens = io.out.width, io.ins[0].rows
        check_fold(self.name, "PE", c, self.pe)
        if tokens < 1:
            raise ValueError(f"{self.name}: TokenSum needs the number of tokens per image")
        i, o = io.ins[0], io.out
        return c, tokens, hls.stream(c, self.pe, i.bits, i.signed), hls.stream(c, self.pe, o.bits, o.signed)

    def hls(self, io):
        c, n, s_in, s_out = self.streams(io)
        i = io.ins[0]
        return hls.kernel_node(self.name, "token_sum", [n, c, self.pe, i.bits, hls.cpp_bool(i.signed), io.out.bits],
                               [s_in], s_out, rows_per=n, rows_out_per_in=(1, n))

    def rtl(self, io):
        c, n, s_in, s_out = self.streams(io)
        pe, i = self.pe, io.ins[0]
        module = rtl.module_name("tsum", self.name)
        src = rtl.render("token_sum.sv.j2", node=self.name, module=module, c=c, cf=c // pe, cfw=counter_bits(c // pe),
                         pe=pe, ib=i.bits, signed=i.signed, ob=io.out.bits, n=n, nw=counter_bits(n))
        return rtl.RtlKernel(self.name, module, src, [s_in], s_out, rows_out_per_in=(1, n))
