"""PooledUpsample: the pooled tokens of an attention stream summed over all windows and
nearest-upsampled back to the map (MSMHA's high-scale branch; the mean's 1/windows folds into
the blend Affine after it).  With ``win`` 0 the stream is a pooled map alone (one "window" of
no local tokens): a plain nearest upsampling (BinaryViT's keys and values from pooled tokens,
brought back to the map for the context sum).

HLS: ``bhvit::pooled_upsample`` (bhvit_tokens.hpp); RTL: pooled_upsample.sv.j2.
"""
from __future__ import annotations

import math

from .. import hls, rtl
from .. import kernels as K
from .attention_windows import AttentionWindows
from .base import map_to_tokens, register


@register
class PooledUpsample(AttentionWindows):
    op_type = "PooledUpsample"

    def execute(self, c):
        a = self.attrs
        h, w, win = a["H"], a["W"], a["win"]
        n_win = (h // win) * (w // win) if win else 1
        high = c[:, win * win:]
        side = int(round(math.sqrt(high.shape[1])))
        b, dim = c.shape[0] // n_win, c.shape[-1]
        high = high.reshape(b, n_win, side, side, dim).sum(1).transpose(0, 3, 1, 2)
        return [map_to_tokens(K.upsample_nearest(high, h // side))]

    def torch_forward(self, net, c):
        from ..torch_form import map_to_tokens as tok
        a = self.attrs
        h, w, win = a["H"], a["W"], a["win"]
        n_win = (h // win) * (w // win) if win else 1
        high = c[:, win * win:]
        side = int(round(math.sqrt(high.shape[1])))
        b, dim = c.shape[0] // n_win, c.shape[-1]
        high = high.reshape(b, n_win, side, side, dim).sum(1).permute(0, 3, 1, 2)
        f = h // side
        return tok(high.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3))

    def geometry(self, io) -> dict:
        if self.attrs["win"]:
            return super().geometry(io)
        g = super().geometry_of(io, 1)          # win 0: the whole stream is the pooled map
        return dict(g, win=0, n_win=1, n_loc=0)

    def side(self, io, pooled: int) -> int:
        """The pooled tokens' map side (they upsample by H / side)."""
        h, w = self.attrs["H"], self.attrs["W"]
        side = math.isqrt(pooled)
        if side < 1 or side * side != pooled or h % side or w % side or h // side != w // side:
            raise ValueError(f"{self.name}: {pooled} pooled tokens do not upsample to the {h}x{w} map")
        return side

    def hls(self, io):
        g, pooled = self.geometry(io), self.pooled_per_window(io)
        h, w, i = g["h"], g["w"], io.ins[0]
        side = self.side(io, pooled)
        rows_img = g["n_win"] * (g["n_loc"] + pooled)
        return hls.kernel_node(self.name, "pooled_upsample",
                               [h, w, g["win"], side, g["c"], self.pe, i.bits, hls.cpp_bool(i.signed), io.out.bits],
                               [self.in_stream(io)], hls.stream(g["c"], self.pe, io.out.bits, True), rows_per=rows_img,
                               rows_out_per_in=(h * w, rows_img))

    def rtl(self, io):
        g, pooled = self.geometry(io), self.pooled_per_window(io)
        side = self.side(io, pooled)
        i = io.ins[0]
        module = rtl.module_name("pups", self.name)
        src = rtl.render("pooled_upsample.sv.j2", module=module, side=side, f=g["h"] // side, nwin=g["n_win"],
                         ib=i.bits, ob=io.out.bits, signed=i.signed, **self.rtl_common(io))
        return rtl.RtlKernel(self.name, module, src, [self.in_stream(io)],
                             hls.stream(g["c"], self.pe, io.out.bits, True),
                             rows_out_per_in=(g["h"] * g["w"], g["n_win"] * (g["n_loc"] + pooled)))
