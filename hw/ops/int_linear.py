"""IntLinear: the classifier, an integer matrix-vector product plus a bias.

(rows, K) x w (N, K) 8-bit integers + bias (N,), exact sums; SIMD inputs and PE outputs per
word, the accumulator sized from the input type.  HLS: ``bhvit::int_linear`` (bhvit_int.hpp);
RTL: int_linear.sv.j2.
"""
from __future__ import annotations

import numpy as np

from .. import hls, rtl
from .. import kernels as K
from ..resources import CONTROL_LUTS, counter_bits, memory_cost, value_bits, weight_rom_in_bram
from .base import HwOp, check_fold, prod, register


@register
class IntLinear(HwOp):
    op_type = "IntLinear"
    weight_bits = 8

    def execute(self, x):
        return [K.int_matmul(x, self.params["w"]) + self.params["bias"]]

    # ---- PyTorch
    def torch_forward(self, net, x):
        return x @ net.p(self.node, "w").T + net.p(self.node, "bias")

    def qat_role(self, key):
        return "int8" if key == "w" else "value"

    def intnet_params(self, vals):
        return {"w": vals["w"], "bias": vals["bias"]}

    def qonnx_modules(self, net):
        from ..torch_form import int_quant
        return {"quant": int_quant(8)}      # 8-bit integer weights (the folder clamps them to +-127)

    def qonnx_forward(self, net, x):
        w = net.module_of(self.node)(net.c(self.node, "w"))
        return x @ w.T + net.c(self.node, "bias")

    # ---- folding and cost
    def fold_dims(self, io):
        w = self.params["w"]
        return {"PE": w.shape[0], "SIMD": prod(w.shape[1:])}

    def steps(self):
        w = self.params["w"]
        return w.shape[0] // self.pe, prod(w.shape[1:]) // self.simd

    def cost(self, io):
        pe, simd = self.pe, self.simd
        nf, sf = self.steps()
        rom = (sf * nf, simd * pe * value_bits(self.params["w"]))   # weights at the width the RTL stores them
        bram, lut_mem, mem = memory_cost(0, roms=[(rom, weight_rom_in_bram(*rom))])
        luts = CONTROL_LUTS + pe * io.out.bits * 2
        return dict(cycles=int(prod(io.out.shape[:-1]) * sf * nf), mem_bits=int(mem), bram36=bram,
                    luts=int(luts + lut_mem), dsps=pe * simd)

    def delay(self):
        return 0, 1          # reads a whole row before its first output

    def reads_in_bursts(self):
        """int_linear.sv.j2 reads a row's SF > 1 input words back to back (as the MVAU does)."""
        return self.steps()[1] > 1

    # ---- code generation
    def checked(self, io):
        w = np.asarray(self.params["w"], dtype=np.int64)
        bias = np.broadcast_to(np.asarray(self.params["bias"], dtype=np.int64).reshape(-1), (w.shape[0],))
        n, kk = w.shape
        check_fold(self.name, "PE", n, self.pe)
        check_fold(self.name, "SIMD", kk, self.simd)
        # the accumulator is sized from the input type; the output type (the graph's) may be
        # narrower, since the graph bounds the input by its producer's range (a token sum)
        in_bits, in_signed = io.ins[0].bits, io.ins[0].signed
        xmax = (1 << (in_bits - 1)) if in_signed else (1 << in_bits) - 1
        bound = int(np.abs(w).sum(1).max(initial=0)) * xmax + int(np.abs(bias).max(initial=0))
        return w, bias, n, kk, bound

    def hls(self, io):
        w, bias, n, kk, bound = self.checked(io)
        pe, simd = self.pe, self.simd
        in_bits, in_signed, out_bits = io.ins[0].bits, io.ins[0].signed, io.out.bits
        tables = [hls.int_table("w", w, (pe, (n // pe) * (kk // simd), simd), hls.fold_init(w, pe, simd)),
                  hls.int_table("b", bias, (pe, n // pe), hls.lanes_init(bias, pe))]
        return hls.kernel_node(self.name, "int_linear",
                               [kk, n, simd, pe, in_bits, hls.cpp_bool(in_signed), bound.bit_length() + 2, out_bits],
                               [hls.stream(kk, simd, in_bits, in_signed)], hls.stream(n, pe, out_bits, True), tables)

    def rtl(self, io):
        w, bias, n, kk, bound = self.checked(io)
        pe, simd = self.pe, self.simd
        in_bits, in_signed, out_bits = io.ins[0].bits, io.ins[0].signed, io.out.bits
        nf, sf = n // pe, kk // simd
        wb, bb = value_bits(w), value_bits(bias)
        rom = [(f * sf + s, rtl.word_hex(w[f * pe:(f + 1) * pe, s * simd:(s + 1) * simd].reshape(-1), wb))
               for f in range(nf) for s in range(sf)]
        module = rtl.module_name("ilin", self.name)
        src = rtl.render("int_linear.sv.j2", node=self.name, module=module, kk=kk, n=n, simd=simd, pe=pe, ib=in_bits,
                         signed=in_signed, wb=wb, bb=bb, ab=bound.bit_length() + 2, ob=out_bits, sf=sf, nf=nf,
                         aw=counter_bits(nf * sf), sfw=counter_bits(sf), nfw=counter_bits(nf), rom=rom,
                         bias_rom=rtl.lanes_rom(bias, pe, bb), rom_attr=rtl.weight_rom_attr(nf * sf, pe * simd * wb))
        return rtl.RtlKernel(self.name, module, src, [hls.stream(kk, simd, in_bits, in_signed)],
                             hls.stream(n, pe, out_bits, True))
