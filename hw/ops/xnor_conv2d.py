"""XnorConv2d: binary k x k convolution of a +-1 map with +-1 weights (MSGDC's dilated grouped
convolutions, the binary downsampling).

Output: the signed sum over the valid taps of each output token (a zero-padded tap counts 0,
as sign(x) padded with zeros does in PyTorch).  Input one C-bit word per token (bit 1 <-> +1);
PE output channels per cycle, every tap of a group at once.  HLS: ``bhvit::xnor_conv``
(bhvit_binary.hpp); RTL: map_conv.sv.j2.
"""
from __future__ import annotations

import numpy as np

from .. import hls, rtl
from .. import kernels as K
from ..resources import CONTROL_LUTS, counter_bits, memory_cost, popcount_luts, weight_rom_in_bram
from .base import check_fold, map_to_tokens, prod, register, tokens_to_map
from .map_conv import MapConv, out_size


@register
class XnorConv2d(MapConv):
    op_type = "XnorConv2d"
    attr_types = {"H": "i", "W": "i", "kernel": "i", "stride": "i", "pad": "i", "dilation": "i", "groups": "i"}
    weight_bits = 1
    binary_weights = "w"
    # adder levels of the RTL kernel's XNOR-popcount tree per pipeline stage (hw.rtl.popcount_sv):
    # its 6-bit counts are registered, then every third level, so that no stage holds more than
    # about three ternary adders (a 512-bit tree in one cycle took 14.6 ns in the timing estimate)
    popcount_cut = 3

    def execute(self, xb):
        a = self.attrs
        m = tokens_to_map(xb, a["H"], a["W"]).astype(np.int8)
        acc = K.binary_conv2d(m, self.params["w"].astype(np.int8), stride=a["stride"], padding=a["pad"],
                              dilation=a["dilation"], groups=a["groups"])
        return [map_to_tokens(acc)]

    # ---- PyTorch
    def torch_forward(self, net, xb):
        import torch.nn.functional as F

        from ..torch_form import map_to_tokens as tok, tokens_to_map as tmap
        a = self.attrs
        acc = F.conv2d(tmap(xb, a["H"], a["W"]), net.p(self.node, "w"), stride=a["stride"], padding=a["pad"],
                       dilation=a["dilation"], groups=a["groups"])
        return tok(acc)

    def qat_role(self, key):
        return "binary"

    def intnet_params(self, vals):
        return {"w": vals["w"].astype(np.int8)}

    def qonnx_modules(self, net):
        import torch
        from brevitas.nn import QuantConv2d
        from brevitas.quant import SignedBinaryWeightPerTensorConst
        a = self.attrs
        w = net.c(self.node, "w")                                         # (O, I/g, k, k) +-1
        conv = QuantConv2d(w.shape[1] * a["groups"], w.shape[0], w.shape[-1], stride=a["stride"],
                           padding=a["pad"], dilation=a["dilation"], groups=a["groups"], bias=False,
                           weight_quant=SignedBinaryWeightPerTensorConst, weight_scaling_const=1.0,
                           return_quant_tensor=False)
        conv.weight.data = w.contiguous().to(torch.float32)
        return {"layer": conv}

    def qonnx_forward(self, net, xb):
        from ..torch_form import DT, map_to_tokens as tok, tokens_to_map as tmap
        a = self.attrs
        return tok(net.module_of(self.node)(tmap(xb, a["H"], a["W"]).float()).to(DT))

    # ---- folding and cost
    def fold_dims(self, io):
        return {"PE": self.params["w"].shape[0]}        # every tap of a group per cycle, PE outputs

    def cost(self, io):
        a, pe = self.attrs, self.pe
        o = self.params["w"].shape[0]
        simd = prod(self.params["w"].shape[1:])         # no SIMD folding: all C/G * k * k terms
        c = self.banked_cycles(a["H"] * a["W"], io.out.rows * (self.params["w"].shape[-1] ** 2 + o // pe))
        luts = CONTROL_LUTS + pe * (popcount_luts(simd) + 2 * io.out.bits)
        # image banks, a C-bit word per token
        shape = (self.banks * a["H"] * a["W"], io.ins[0].width)
        # a grouped convolution's lanes pick their group's channels from the word: Yosys folds that
        # choice into the XNORs (the stage-0 / 1 units map 90 and 126 LUTs under the C/G k k per
        # lane once counted for it), so it costs nothing more here
        luts += 60                                      # tap addresses (row, column, padding)
        rom = (o // pe, simd * pe * self.weight_bits)
        bram, lut_mem, mem = memory_cost(shape[0] * shape[1], shape, roms=[(rom, weight_rom_in_bram(*rom))])
        return dict(cycles=c["cycles"], mem_bits=int(mem), bram36=bram, luts=int(luts + lut_mem), dsps=0,
                    **{k: v for k, v in c.items() if k != "cycles"})

    def binary_work(self, io):
        """C/G x k x k products per output channel and pixel, on PE lanes of all those taps each."""
        w = self.params["w"]
        return dict(macs=int(io.out.rows * prod(w.shape)), lanes=self.pe * prod(w.shape[1:]))

    # ---- code generation
    def shape(self):
        w = np.asarray(self.params["w"])
        o, cg, k, _ = w.shape
        check_fold(self.name, "PE", o, self.pe)
        return w, o, cg, k

    def hls(self, io):
        a, pe = self.attrs, self.pe
        h, w_ = a["H"], a["W"]
        w, o, cg, k = self.shape()
        c = cg * a["groups"]
        bits = (w.reshape(o, cg, k * k).transpose(0, 2, 1) + 1) // 2          # [o][tap][channel of the group]
        rows = ["{" + ", ".join(hls.bit_word_literal(x, cg) for x in hls.hex_words(bits[oo])) + "}" for oo in range(o)]
        table = hls.Table("w", hls.bit_word_type(cg), (o, k * k), cg, hls.rows_init(rows))
        ho = out_size(h, k, a["stride"], a["pad"], a["dilation"])
        wo = out_size(w_, k, a["stride"], a["pad"], a["dilation"])
        if ho < 1 or wo < 1:
            raise ValueError(f"{self.name}: a {k}x{k} kernel (dilation {a['dilation']}, padding {a['pad']}) on a "
                             f"{h}x{w_} map")
        out_bits = io.out.bits
        return hls.kernel_node(self.name, "xnor_conv",
                               [h, w_, c, o, a["groups"], k, a["stride"], a["pad"], a["dilation"], pe, out_bits],
                               [hls.stream(c, c, 1, bipolar=True)], hls.stream(o, pe, out_bits, True), [table],
                               rows_per=h * w_, rows_out_per_in=(ho * wo, h * w_))

    def rtl(self, io):
        a, pe = self.attrs, self.pe
        groups = a["groups"]
        w, o, cg, k = self.shape()
        c = cg * groups
        if o % groups:
            raise ValueError(f"{self.name}: {groups} groups do not divide {o} outputs")
        bits = (w.reshape(o, cg, k * k).transpose(0, 2, 1) + 1) // 2          # [o][tap][channel of the group]
        gw = counter_bits(groups)
        grp = np.arange(o) // (o // groups)
        rom = []
        for f in range(o // pe):
            word = rtl.word_hex(bits[f * pe:(f + 1) * pe].reshape(-1), 1)
            if groups > 1:
                word = format(int(word, 16) | (int(rtl.word_hex(grp[f * pe:(f + 1) * pe], gw), 16) << (pe * k * k * cg)),
                              "x")
            rom.append((f, word))
        ww = pe * k * k * cg + (pe * gw if groups > 1 else 0)
        out_bits = io.out.bits
        module, src, ratio = self.render_rtl(
            "xnor", a["H"], a["W"], k, a["stride"], a["pad"], a["dilation"], c, pe, o // pe, 1, out_bits, rom, ww,
            f"binary {k}x{k} convolution, {c} -> {o} channels in {groups} groups", "hw/kernels/binary.py binary_conv2d",
            cg=cg, gw=gw, groups=groups, pc_cut=self.popcount_cut,
            pc_stages=rtl.popcount_stages(k * k * cg, self.popcount_cut),
            rom_doc=f"lane p, tap t: the CG = {cg} weight bits at (p * KK + t) * CG; then PE group indices")
        return rtl.RtlKernel(self.name, module, src, [hls.stream(c, c, 1)], hls.stream(o, pe, out_bits, True),
                             rows_out_per_in=ratio)
