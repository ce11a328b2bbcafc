"""IntConv2d: the stem, an integer k x k convolution (stride k, no padding) of the uint8 image.

8-bit weights (the normalisation, the stem conv and its BN folded: hw.intnet), exact integer
sums; one Cin x 8-bit word per pixel, PE outputs per word and SIMD products per cycle.
HLS: ``bhvit::int_conv`` (bhvit_int.hpp); RTL: map_conv.sv.j2.
"""
from __future__ import annotations

import numpy as np

from .. import hls, rtl
from .. import kernels as K
from ..resources import CONTROL_LUTS, counter_bits, memory_cost, value_bits, weight_rom_in_bram
from .base import check_fold, map_to_tokens, prod, register
from .map_conv import MapConv, out_size


@register
class IntConv2d(MapConv):
    op_type = "IntConv2d"
    attr_types = {"stride": "i", "H": "i", "W": "i"}
    weight_bits = 8

    def execute(self, x):
        acc = K.int_conv2d(x.transpose(0, 3, 1, 2), self.params["w"], stride=self.attrs["stride"])
        return [map_to_tokens(np.rint(acc).astype(np.int64))]

    # ---- PyTorch
    def torch_forward(self, net, x):
        import torch.nn.functional as F

        from ..torch_form import map_to_tokens as tok
        return tok(F.conv2d(x.permute(0, 3, 1, 2), net.p(self.node, "w"), stride=self.attrs["stride"]))

    def qat_role(self, key):
        return "int8" if key == "w" else "value"

    def intnet_params(self, vals):
        return {"w": vals["w"]}

    def qonnx_modules(self, net):
        from ..torch_form import int_quant
        return {"quant": int_quant(8)}      # 8-bit integer weights (the folder clamps them to +-127)

    def qonnx_forward(self, net, x):
        import torch.nn.functional as F

        from ..torch_form import DT, map_to_tokens as tok
        w = net.module_of(self.node)(net.c(self.node, "w"))
        # float32 Conv (ONNX Runtime has no float64 one): exact while 255 * 127 * fan-in < 2**24
        if 255 * 127 * w[0].numel() >= 2 ** 24:
            raise ValueError(f"{self.name}: stem fan-in {w[0].numel()} too large for an exact float32 Conv")
        y = F.conv2d(x.permute(0, 3, 1, 2).float(), w.float(), stride=self.attrs["stride"])
        return tok(y.to(DT))

    # ---- folding and cost
    def fold_dims(self, io):
        w = self.params["w"]
        return {"PE": w.shape[0], "SIMD": prod(w.shape[1:])}

    def cost(self, io):
        a, pe, simd = self.attrs, self.pe, self.simd
        w = self.params["w"]
        o, t = w.shape[0], prod(w.shape[1:])
        steps = (t // simd) * (o // pe)
        c = self.banked_cycles(a["H"] * a["W"], io.out.rows * (w.shape[-1] ** 2 + steps))
        rom = (steps, simd * pe * value_bits(w))        # weights at the width the RTL stores them
        shape = (self.banks * a["H"] * a["W"], io.ins[0].width * 8)   # image banks of 8-bit pixels
        bram, lut_mem, mem = memory_cost(shape[0] * shape[1], shape, roms=[(rom, weight_rom_in_bram(*rom))])
        luts = CONTROL_LUTS + pe * io.out.bits * 2
        return dict(cycles=c["cycles"], mem_bits=int(mem), bram36=bram, luts=int(luts + lut_mem), dsps=pe * simd,
                    **{k: v for k, v in c.items() if k != "cycles"})

    # ---- code generation
    # products one DSP cascade sums within a clock cycle in the RTL kernel (at about 1.3 ns per
    # DSP48E1 past the first one's 1.8 ns, four fit 100 MHz on a 7-series -1 part with margin)
    dsp_chain = 4

    def tree_levels(self) -> int:
        """Registered levels of the RTL kernel's adder tree over the groups of dsp_chain
        products of a lane.  The products, the group sums and each level take a cycle of their
        own (no long multiply-add chain in one clock): 2 + tree_levels() cycles of latency and
        none per image."""
        return (-(-self.simd // self.dsp_chain) - 1).bit_length()

    def checked(self, io):
        """(w, o, cin, k, terms, bound) after the checks both kernels need."""
        if io.ins[0].bits != 8 or io.ins[0].signed:
            raise ValueError(f"{self.name}: the stem kernel takes 8-bit unsigned pixels, not {io.ins[0].dtype}")
        a = self.attrs
        w = np.asarray(self.params["w"], dtype=np.int64)
        o, cin, k, k2 = w.shape
        if k != k2 or a["H"] < k or a["W"] < k:
            raise ValueError(f"{self.name}: a {k}x{k2} kernel on a {a['H']}x{a['W']} image")
        t = cin * k * k
        check_fold(self.name, "PE", o, self.pe)
        check_fold(self.name, "SIMD", t, self.simd)
        bound = int(np.abs(w).reshape(o, -1).sum(1).max(initial=0)) * 255
        if io.out.bits < bound.bit_length() + 1:
            raise ValueError(f"{self.name}: {io.out.bits} output bits cannot hold the sums (up to {bound})")
        return w, o, cin, k, t, bound

    def hls(self, io):
        w, o, cin, k, t, bound = self.checked(io)
        a, pe, simd = self.attrs, self.pe, self.simd
        h, w_, stride = a["H"], a["W"], a["stride"]
        table = hls.int_table("w", w, (pe, (o // pe) * (t // simd), simd), hls.fold_init(w.reshape(o, t), pe, simd))
        ho, wo = out_size(h, k, stride, 0, 1), out_size(w_, k, stride, 0, 1)
        return hls.kernel_node(self.name, "int_conv",
                               [h, w_, cin, o, k, stride, simd, pe, bound.bit_length() + 2, io.out.bits],
                               [hls.stream(cin, cin, 8)], hls.stream(o, pe, io.out.bits, True), [table],
                               rows_per=h * w_, rows_out_per_in=(ho * wo, h * w_))

    def rtl(self, io):
        w, o, cin, k, t, bound = self.checked(io)
        a, pe, simd = self.attrs, self.pe, self.simd
        wf = w.reshape(o, t)
        nf, sf = o // pe, t // simd
        wb = value_bits(wf)
        rom = [(f * sf + s, rtl.word_hex(wf[f * pe:(f + 1) * pe, s * simd:(s + 1) * simd].reshape(-1), wb))
               for f in range(nf) for s in range(sf)]
        out_bits = io.out.bits
        module, src, ratio = self.render_rtl(
            "int", a["H"], a["W"], k, a["stride"], 0, 1, cin * 8, pe, nf, sf, out_bits, rom, pe * simd * wb,
            f"integer {k}x{k} convolution (the stem), {cin} -> {o} channels", "hw/kernels/fixed.py int_conv2d",
            simd=simd, wb=wb, ab=max(bound.bit_length() + 2, out_bits), t=t, tiw=counter_bits(t), lv=self.tree_levels(),
            g=self.dsp_chain, ng=-(-simd // self.dsp_chain),
            rom_doc=f"lane p, term s: WB = {wb} bits at (p * SIMD + s) * WB")
        return rtl.RtlKernel(self.name, module, src, [hls.stream(cin, cin, 8)], hls.stream(o, pe, out_bits, True),
                             rows_out_per_in=ratio)
