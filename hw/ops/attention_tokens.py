"""AttentionTokens: MSMHA's window partition of the map plus the pooled tokens appended to every
window (input 0 the map, input 1 its pooled tokens; it reads all of the map first).

HLS: ``bhvit::attention_tokens`` (bhvit_tokens.hpp); RTL: attention_tokens.sv.j2.
"""
from __future__ import annotations

import numpy as np

from .. import hls, rtl
from .. import kernels as K
from .attention_windows import AttentionWindows
from .base import register, tokens_to_map


@register
class AttentionTokens(AttentionWindows):
    op_type = "AttentionTokens"
    reads_inputs_in_order = True

    def execute(self, x, pooled):
        a = self.attrs
        win = K.window_partition(tokens_to_map(x, a["H"], a["W"]), a["win"])
        n_win = win.shape[0] // x.shape[0]
        return [np.concatenate([win, np.repeat(pooled, n_win, axis=0)], axis=1)]

    def torch_forward(self, net, x, pooled):
        import torch

        from ..torch_form import tokens_to_map
        a = self.attrs
        win = a["win"]
        m = tokens_to_map(x, a["H"], a["W"])
        b, c, h, w = m.shape
        wins = m.permute(0, 2, 3, 1).reshape(b, h // win, win, w // win, win, c)
        wins = wins.permute(0, 1, 3, 2, 4, 5).reshape(-1, win * win, c)
        n_win = wins.shape[0] // b
        return torch.cat([wins, pooled.repeat_interleave(n_win, dim=0)], dim=1)

    def checked(self, io):
        g = self.geometry(io)
        d0, d1 = io.ins
        if (d1.bits, d1.signed) != (d0.bits, d0.signed):
            raise ValueError(f"{self.name}: the map ({d0.dtype}) and the pooled tokens ({d1.dtype}) differ")
        return g, io.ins[1].rows          # pooled tokens per image (= per window)

    def hls(self, io):
        g, pooled = self.checked(io)
        h, w, s = g["h"], g["w"], self.in_stream(io)
        return hls.kernel_node(self.name, "attention_tokens", [h, w, g["win"], pooled, g["c"], self.pe, io.ins[0].bits],
                               [s, dict(s)], dict(s), rows_per=h * w, rows_in=(h * w, pooled),
                               rows_out_per_in=(g["n_win"] * (g["n_loc"] + pooled), h * w))

    def rtl(self, io):
        g, pooled = self.checked(io)
        s = self.in_stream(io)
        module = rtl.module_name("atok", self.name)
        src = rtl.render("attention_tokens.sv.j2", module=module, p=pooled, b=io.ins[0].bits, **self.rtl_common(io))
        return rtl.RtlKernel(self.name, module, src, [s, dict(s)], dict(s),
                             rows_out_per_in=(g["n_win"] * (g["n_loc"] + pooled), g["h"] * g["w"]))
