"""PatchConcat: the k x k tokens of every patch of a map as one token of k*k*C channels.

out[i * W/k + j, (dy * k + dx) * C + c] = x[(i * k + dy) * W + j * k + dx, c]: the gather half of a
k x k stride-k patch merging (Swin's concatenation; a full-precision downsampling then applies an
integer matrix, IntLinear, to the 4C channels of a 2 x 2 patch).  Pure data movement: the kernel
buffers a band of k rows of the map and emits its W/k patch tokens.

HLS: templates/hls/patch_concat.cpp.j2; RTL: templates/rtl/patch_concat.sv.j2.
"""
from __future__ import annotations

import numpy as np

from .. import hls, rtl, templating
from ..resources import counter_bits
from .base import FoldingError, check_fold, register, tokens_to_map
from .map_buffer import MapBuffer


@register
class PatchConcat(MapBuffer):
    op_type = "PatchConcat"
    attr_types = {"H": "i", "W": "i", "k": "i"}

    def execute(self, x):
        a = self.attrs
        h, w, k = a["H"], a["W"], a["k"]
        m = tokens_to_map(x, h, w)                                   # (B, C, H, W)
        b, c = m.shape[:2]
        p = m.reshape(b, c, h // k, k, w // k, k).transpose(0, 2, 4, 3, 5, 1)   # (B, i, j, dy, dx, C)
        return [np.ascontiguousarray(p).reshape(b, (h // k) * (w // k), k * k * c)]

    def torch_forward(self, net, x):
        from ..torch_form import tokens_to_map as tmap
        a = self.attrs
        h, w, k = a["H"], a["W"], a["k"]
        m = tmap(x, h, w)
        b, c = m.shape[:2]
        return m.reshape(b, c, h // k, k, w // k, k).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, k * k * c)

    def fold_dims(self, io):
        return {"PE": io.ins[0].width}          # PE channels of one input token per word

    def band(self):
        """k rows: the patches of a band of k rows need nothing else."""
        return self.attrs["k"]

    def checked(self, io):
        a = self.attrs
        c, h, w, k = io.ins[0].width, a["H"], a["W"], a["k"]
        check_fold(self.name, "PE", c, self.pe)
        if k < 1 or h % k or w % k:
            raise FoldingError(f"{self.name}: {k}x{k} patches do not tile the {h}x{w} map")
        return c, h, w, k

    def streams(self, io):
        c, h, w, k = self.checked(io)
        i = io.ins[0]
        return (hls.stream(c, self.pe, i.bits, i.signed),
                hls.stream(k * k * c, self.pe, i.bits, i.signed), ((h // k) * (w // k), h * w))

    def hls(self, io):
        c, h, w, k = self.checked(io)
        s_in, s_out, ratio = self.streams(io)
        fn = hls.c_name(self.name)
        code = templating.render(f"{hls.LIBRARY}/patch_concat.cpp.j2", fn=fn, name=self.name, h=h, w=w, k=k,
                                 cf=c // self.pe, word=self.pe * io.ins[0].bits)
        return hls.NodeCode(self.name, fn, code, [s_in], s_out, rows_out_per_in=ratio)

    def rtl(self, io):
        c, h, w, k = self.checked(io)
        s_in, s_out, ratio = self.streams(io)
        cf, n = c // self.pe, k * w * (c // self.pe)           # words of one band
        module = rtl.module_name("patch", self.name)
        src = rtl.render("patch_concat.sv.j2", node=self.name, module=module, h=h, w=w, k=k, cf=cf, n=n,
                         word=self.pe * io.ins[0].bits, banks=self.banks, bits=counter_bits)
        return rtl.RtlKernel(self.name, module, src, [s_in], s_out, rows_out_per_in=ratio)
