"""Thresholding: a sign with a learnable bias, as one integer threshold per channel (FINN's op).

Output +1 where x >= t[c], else -1 (BIPOLAR; sign(0) = +1).  FINN's own node, with FINN's
attributes (NumChannels, numSteps 1, ActVal 0, ...), executed by FINN's Python code in ONNX.
HLS: ``bhvit::threshold_sign`` (templates/hls/bhvit_binary.hpp); RTL: threshold_sign.sv.j2.
"""
from __future__ import annotations

import math

import numpy as np

from .. import hls, rtl
from .. import kernels as K
from ..graph import FINN_DOMAIN
from ..resources import counter_bits, memory_cost, table_bits
from .base import HwOp, check_fold, register


# a channel counter and the handshake: Yosys maps the shipped kernels (27, PE 1 to 8) at 32 LUTs
# below the generic hw.resources.CONTROL_LUTS (make sim at a 5,000-cycle folding, docs/measurements.md)
THRESHOLD_CONTROL_LUTS = 8


@register
class Thresholding(HwOp):
    op_type = "Thresholding"
    domain = FINN_DOMAIN

    def thresholds(self):
        return self.params["thresholds"][:, 0]

    def execute(self, x):
        return [K.threshold(x, self.thresholds()).astype(np.int64)]

    # ---- PyTorch
    def torch_forward(self, net, x):
        from ..torch_form import sign_ste
        t = net.p(self.node, "thresholds")[:, 0]
        # one real unit of the input format: the surrogate is a clipped identity there
        u = (x - t + 0.5) * 2.0 ** -net.frac_of(self.node.inputs[0])
        return sign_ste(u)

    def qat_role(self, key):
        return "threshold"

    def intnet_params(self, vals):
        return {"t": vals["thresholds"][:, 0]}

    def qonnx_modules(self, net):
        from ..torch_form import binary_act
        return {"quant": binary_act()}

    def qonnx_forward(self, net, x):
        return net.module_of(self.node)(x - net.c(self.node, "thresholds")[:, 0])

    def param_datatype(self, key):
        return self.attrs["weightDataType"]

    # ---- cost
    def cost(self, io):
        out_bits = io.out.bits
        mem = sum(table_bits(v) for v in self.params.values())
        bram, lut_mem, mem = memory_cost(mem)
        return dict(cycles=int(math.ceil(io.out.elems / self.pe)), mem_bits=int(mem), bram36=bram,
                    luts=int(THRESHOLD_CONTROL_LUTS + self.pe * (out_bits + 4) + lut_mem), dsps=0)

    # ---- code generation
    def clipped(self, in_bits):
        """The thresholds clipped to [min x, max x + 1]: always / never, the compare is unchanged."""
        t = np.asarray(self.thresholds(), dtype=np.int64).reshape(-1)
        return np.clip(t, -(1 << (in_bits - 1)), (1 << (in_bits - 1)))

    def hls(self, io):
        in_bits, pe = io.ins[0].bits, self.pe
        t = self.clipped(in_bits)
        c = t.size
        check_fold(self.name, "PE", c, pe)
        # in_bits + 1 wide whatever the values: the kernel compares at that width
        table = hls.Table("t", hls.rom_type(hls.c_int(in_bits + 1), in_bits + 1, True), (pe, c // pe), in_bits + 1,
                          hls.lanes_init(t, pe))
        # a graph's Thresholding output is its +-1 activations as bits: a bipolar stream (the
        # top never widens one)
        return hls.kernel_node(self.name, "threshold_sign", [c, pe, in_bits],
                               [hls.stream(c, pe, in_bits, signed=True)], hls.stream(c, pe, 1, bipolar=True), [table])

    def rtl(self, io):
        in_bits, pe = io.ins[0].bits, self.pe
        t = self.clipped(in_bits)
        c = t.size
        check_fold(self.name, "PE", c, pe)
        cf = c // pe
        rom = [(f, rtl.word_hex(t[f * pe:(f + 1) * pe], in_bits + 1)) for f in range(cf)]
        module = rtl.module_name("thr", self.name)
        src = rtl.render("threshold_sign.sv.j2", node=self.name, module=module, c=c, pe=pe, ib=in_bits, cf=cf,
                         cfw=counter_bits(cf), rom=rom)
        return rtl.RtlKernel(self.name, module, src, [hls.stream(c, pe, in_bits, signed=True)], hls.stream(c, pe, 1))
