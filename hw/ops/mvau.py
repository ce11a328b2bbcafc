"""MVAU: XNOR-popcount matrix-vector unit on BIPOLAR inputs and weights (FINN's op).

For each of the MH outputs, the number of the MW positions where input and weight agree; the
following Affine turns it back into the +-1 dot product 2 pc - MW.  FINN's node (binaryXnorMode,
noActivation, PE / SIMD folding: vectors x MW/SIMD x MH/PE cycles), executed by FINN's Python
code in ONNX.  HLS: ``bhvit::mvau_xnor`` (bhvit_binary.hpp); RTL: mvau_xnor.sv.j2.
"""
from __future__ import annotations

import numpy as np

from .. import hls, rtl
from .. import kernels as K
from ..graph import FINN_DOMAIN
from ..resources import CONTROL_LUTS, counter_bits, memory_cost, popcount_luts, weight_rom_in_bram
from .base import HwOp, check_fold, prod, register


@register
class MVAU(HwOp):
    op_type = "MVAU"
    domain = FINN_DOMAIN
    weight_bits = 1
    binary_weights = "weights"
    # adder levels of the RTL kernel's XNOR-popcount tree per pipeline stage, as in XnorConv2d
    # (hw.rtl.popcount_sv): the 6-bit counts are registered, then every third level, so the
    # weight ROM's read, the XNOR-popcount and the accumulator are not one path
    popcount_cut = 3

    def weight_bits_matrix(self):
        """(MH, MW) 0/1 weight bits (1 <-> +1)."""
        return (self.params["weights"].T + 1) // 2

    def execute(self, x):
        w = self.params["weights"]                    # (MW, MH), +-1
        dot = K.xnor_matmul(x.astype(np.int8), w.T.astype(np.int8))
        return [(dot + self.attrs["MW"]) // 2]

    # ---- PyTorch
    def torch_forward(self, net, x):
        w = net.p(self.node, "weights")               # (K, N) +-1
        return (x @ w + self.attrs["MW"]) / 2

    def qat_role(self, key):
        return "binary"

    def intnet_params(self, vals):
        return {"w": vals["weights"].T.astype(np.int8)}

    def qonnx_modules(self, net):
        import torch
        from brevitas.nn import QuantLinear
        from brevitas.quant import SignedBinaryWeightPerTensorConst
        w = net.c(self.node, "weights")                 # (MW, MH) +-1
        lin = QuantLinear(w.shape[0], w.shape[1], bias=False, weight_quant=SignedBinaryWeightPerTensorConst,
                          weight_scaling_const=1.0, return_quant_tensor=False)
        lin.weight.data = w.T.contiguous().to(torch.float32)
        return {"layer": lin}

    def qonnx_forward(self, net, x):
        # the +-1 dot product, then the popcount of matches that FINN's MVAU outputs
        return (net.module_of(self.node)(x) + self.attrs["MW"]) * 0.5

    def param_datatype(self, key):
        return "BIPOLAR"

    # ---- folding and cost
    def fold_dims(self, io):
        return {"PE": self.attrs["MH"], "SIMD": self.attrs["MW"]}

    def steps(self):
        """(NF, SF): output folds and input folds of one vector."""
        return self.attrs["MH"] // self.pe, self.attrs["MW"] // self.simd

    def cost(self, io):
        pe, simd = self.pe, self.simd
        nf, sf = self.steps()
        cycles = prod(io.out.shape[:-1]) * sf * nf
        luts = CONTROL_LUTS + pe * (popcount_luts(simd) + 2 * io.out.bits)   # XNOR-popcount tree + accumulator
        if sf > 1:                                      # the vector buffer's 2:1 choice
            luts += simd
        rom = (sf * nf, simd * pe * self.weight_bits)   # one ROM word per step
        bram, lut_mem, mem = memory_cost(0, roms=[(rom, weight_rom_in_bram(*rom))])
        return dict(cycles=int(cycles), mem_bits=int(mem), bram36=bram, luts=int(luts + lut_mem), dsps=0)

    def binary_work(self, io):
        """MW x MH products per input vector, on PE x SIMD lanes."""
        a = self.attrs
        return dict(macs=int(prod(io.out.shape[:-1]) * a["MW"] * a["MH"]), lanes=self.pe * self.simd)

    def delay(self):
        return 0, 1          # reads a whole row before its first output

    def reads_in_bursts(self):
        """mvau_xnor.sv.j2 reads a row's SF > 1 input words back to back in its first output fold
        and none in the others: the two-word FIFO in front of it lets the gearbox or kernel before
        it have the next word ready (without it, stage 1's second MLP matrix waited 64 cycles for
        its second word per token, and the shipped top took 12,224 cycles per image instead of
        9,440)."""
        return self.attrs["MW"] // self.simd > 1

    # ---- code generation
    def folded(self):
        w_bits = np.asarray(self.weight_bits_matrix())
        mh, mw = w_bits.shape
        check_fold(self.name, "SIMD", mw, self.simd)
        check_fold(self.name, "PE", mh, self.pe)
        return w_bits, mh, mw, int(mw).bit_length()

    def hls(self, io):
        w_bits, mh, mw, ob = self.folded()
        pe, simd = self.pe, self.simd
        nf, sf = self.steps()
        rows = []
        for p in range(pe):       # weights[pe][nf * SF + sf] = inputs sf*SIMD.. of output nf*PE + pe
            words = []
            for f in range(nf):
                words += hls.hex_words(w_bits[f * pe + p].reshape(sf, simd))
            rows.append("{" + ", ".join(hls.bit_word_literal(h, simd) for h in words) + "}")
        table = hls.Table("w", hls.bit_word_type(simd), (pe, nf * sf), simd, hls.rows_init(rows))
        # a graph's MVAU input is its +-1 activations as bits: a bipolar stream
        return hls.kernel_node(self.name, "mvau_xnor", [mw, mh, simd, pe, ob], [hls.stream(mw, simd, 1, bipolar=True)],
                               hls.stream(mh, pe, ob), [table])

    def rtl(self, io):
        w_bits, mh, mw, ob = self.folded()
        pe, simd = self.pe, self.simd
        nf, sf = self.steps()
        rom = []
        for f in range(nf):          # word nf * SF + sf: lane p = inputs sf*SIMD.. of output nf*PE + p
            for s in range(sf):
                lanes = w_bits[f * pe:(f + 1) * pe, s * simd:(s + 1) * simd]
                rom.append((f * sf + s, rtl.word_hex(lanes.reshape(-1), 1)))
        module = rtl.module_name("mvau", self.name)
        src = rtl.render("mvau_xnor.sv.j2", node=self.name, module=module, mw=mw, mh=mh, simd=simd, pe=pe, ob=ob,
                         sf=sf, nf=nf, aw=counter_bits(nf * sf), sfw=counter_bits(sf), nfw=counter_bits(nf), rom=rom,
                         rom_attr=rtl.weight_rom_attr(nf * sf, pe * simd), pc_cut=self.popcount_cut,
                         pc_stages=rtl.popcount_stages(simd, self.popcount_cut))
        return rtl.RtlKernel(self.name, module, src, [hls.stream(mw, simd, 1)], hls.stream(mh, pe, ob))
