"""Lut: y = table[x - min] on a signed ``in_bits``-bit stream (the stem's GELU).

HLS: ``bhvit::lut`` (bhvit_tokens.hpp); RTL: lut.sv.j2 (the table a ROM read per lane).
"""
from __future__ import annotations

import math

import numpy as np

from .. import hls, rtl
from .. import kernels as K
from ..resources import CONTROL_LUTS, memory_cost, table_bits, value_bits
from .base import HwOp, check_fold, register


@register
class Lut(HwOp):
    op_type = "Lut"
    attr_types = {"in_bits": "i"}

    def execute(self, x):
        return [K.lut(x, self.params["table"], self.attrs["in_bits"])]

    def torch_forward(self, net, x):
        table = net.p(self.node, "table")
        lo = -(1 << (self.attrs["in_bits"] - 1))
        idx = (x.detach() - lo).long()
        exact = table[idx]
        # the gradient: the table's slope around x
        up, down = table[(idx + 1).clamp(max=table.numel() - 1)], table[(idx - 1).clamp(min=0)]
        slope = (up - down) / 2.0
        return exact + (x - x.detach()) * slope

    def qat_role(self, key):
        return "table"

    def qonnx_forward(self, net, x):
        lo = -(1 << (self.attrs["in_bits"] - 1))
        return net.c(self.node, "table")[(x - lo).long()]

    def cost(self, io):
        mem = sum(table_bits(v) for v in self.params.values())
        bram, lut_mem, mem = memory_cost(mem)
        return dict(cycles=int(math.ceil(io.out.elems / self.pe)), mem_bits=int(mem), bram36=bram,
                    luts=int(CONTROL_LUTS + self.pe * (io.out.bits + 4) + lut_mem), dsps=0)

    def checked(self, io):
        table = np.asarray(self.params["table"], dtype=np.int64).reshape(-1)
        in_bits = self.attrs["in_bits"]
        if table.size != 1 << in_bits:
            raise ValueError(f"{self.name}: table of {table.size} entries for a {in_bits}-bit input")
        check_fold(self.name, "PE", io.out.width, self.pe)
        return table, in_bits

    def hls(self, io):
        table, in_bits = self.checked(io)
        c, pe, out_bits = io.out.width, self.pe, io.out.bits
        return hls.kernel_node(self.name, "lut", [c, pe, in_bits, out_bits], [hls.stream(c, pe, in_bits, True)],
                               hls.stream(c, pe, out_bits, True),
                               [hls.int_table("table", table, (table.size,), hls.flat_init(table))])

    def rtl(self, io):
        table, in_bits = self.checked(io)
        c, pe, out_bits = io.out.width, self.pe, io.out.bits
        if value_bits(table) > out_bits:
            raise ValueError(f"{self.name}: table entries need {value_bits(table)} bits, the output has {out_bits}")
        module = rtl.module_name("lut", self.name)
        src = rtl.render("lut.sv.j2", node=self.name, module=module, c=c, pe=pe, cf=c // pe, ib=in_bits, ob=out_bits,
                         rom=[(a, rtl.word_hex([v], out_bits)) for a, v in enumerate(table)])
        return rtl.RtlKernel(self.name, module, src, [hls.stream(c, pe, in_bits, True)],
                             hls.stream(c, pe, out_bits, True))
