"""WindowReverse: the win x win tokens of every window of an attention stream back to the map
(the pooled tokens after them are dropped: PooledUpsample takes those).

HLS: ``bhvit::window_reverse`` (bhvit_tokens.hpp); RTL: window_reverse.sv.j2.
"""
from __future__ import annotations

from .. import hls, rtl
from .. import kernels as K
from .attention_windows import AttentionWindows
from .base import map_to_tokens, register


@register
class WindowReverse(AttentionWindows):
    op_type = "WindowReverse"

    def execute(self, c):
        a = self.attrs
        return [map_to_tokens(K.window_reverse(c[:, :a["win"] * a["win"]], a["win"], a["H"], a["W"]))]

    def torch_forward(self, net, c):
        from ..torch_form import map_to_tokens as tok
        a = self.attrs
        win, h, w = a["win"], a["H"], a["W"]
        loc = c[:, :win * win]
        ch = loc.shape[-1]
        m = loc.reshape(-1, h // win, w // win, win, win, ch).permute(0, 5, 1, 3, 2, 4).reshape(-1, ch, h, w)
        return tok(m)

    def hls(self, io):
        g, pooled = self.geometry(io), self.pooled_per_window(io)
        h, w, s = g["h"], g["w"], self.in_stream(io)
        rows_img = g["n_win"] * (g["n_loc"] + pooled)
        return hls.kernel_node(self.name, "window_reverse", [h, w, g["win"], pooled, g["c"], self.pe, io.ins[0].bits],
                               [s], dict(s), rows_per=rows_img, rows_out_per_in=(h * w, rows_img))

    def rtl(self, io):
        g, pooled = self.geometry(io), self.pooled_per_window(io)
        s = self.in_stream(io)
        module = rtl.module_name("wrev", self.name)
        src = rtl.render("window_reverse.sv.j2", module=module, p=pooled, b=io.ins[0].bits, **self.rtl_common(io))
        return rtl.RtlKernel(self.name, module, src, [s], dict(s),
                             rows_out_per_in=(g["h"] * g["w"], g["n_win"] * (g["n_loc"] + pooled)))
