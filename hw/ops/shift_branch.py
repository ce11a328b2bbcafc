"""ShiftBranch: one branch of BHViT's shift module on a map, circular (torch.roll) as the model,
or one of BinaryViT's average-pool branches (``pad`` "zero": a box sum with zeros beyond the map).

``kind`` "box": the sum of the 2 reach + 1 rolls along H or W (``axis``; the 1/3 or 1/5 folds
into the LayerScale after it); "mix": the channels split in 4 quarters rolled +reach along H,
-reach along H, +reach along W, -reach along W.  The graph builder emits six per block;
hw.ops.shift_conv fuses them for the hardware flows.  HLS: ``bhvit::shift_box`` /
``bhvit::shift_mix`` (bhvit_tokens.hpp); RTL: map_tokens.sv.j2.
"""
from __future__ import annotations

from .. import hls
from .. import kernels as K
from .base import FoldingError, check_fold, map_to_tokens, register, tokens_to_map
from .map_buffer import MapBuffer


@register
class ShiftBranch(MapBuffer):
    op_type = "ShiftBranch"
    attr_types = {"kind": "s", "axis": "s", "reach": "i", "H": "i", "W": "i", "pad": "s"}
    optional_attrs = ("pad",)

    @property
    def pad(self) -> str:
        return self.attrs.get("pad") or "circular"

    @property
    def is_box(self) -> bool:
        return self.attrs["kind"] == "box"

    def execute(self, x):
        a = self.attrs
        m = tokens_to_map(x, a["H"], a["W"])
        if self.is_box:
            y = K.box_sum(m, a["reach"], 2 if a["axis"] == "h" else 3, self.pad)
        else:
            y = K.channel_mix(m, a["reach"])
        return [map_to_tokens(y)]

    def torch_forward(self, net, x):
        import torch

        from ..torch_form import map_to_tokens as tok, tokens_to_map as tmap
        a = self.attrs
        m = tmap(x, a["H"], a["W"])
        s = a["reach"]
        if self.is_box:
            from ..torch_form import shifted
            dim = 2 if a["axis"] == "h" else 3
            y = m + sum(shifted(m, r, dim, self.pad) + shifted(m, -r, dim, self.pad) for r in range(1, s + 1))
        else:
            q = m.shape[1] // 4
            y = torch.cat([torch.roll(m[:, :q], s, 2), torch.roll(m[:, q:2 * q], -s, 2),
                           torch.roll(m[:, 2 * q:3 * q], s, 3), torch.roll(m[:, 3 * q:], -s, 3)], dim=1)
        return tok(y)

    def fold_dims(self, io):
        # a channel mix moves each quarter of the channels: PE channels of one quarter per word
        return {"PE": io.out.width if self.is_box else io.out.width // 4}

    def taps(self):
        return 2 * self.attrs["reach"] + 1 if self.is_box else 1

    def checked(self, io):
        c = io.out.width
        if self.pad != "circular":
            raise ValueError(f"{self.name}: a zero-padded shift branch has no kernel of its own; the hardware flows "
                             "fuse it into a ShiftConv (hw.passes.lower), which pads with zeros")
        if self.is_box:
            check_fold(self.name, "PE", c, self.pe)
        else:
            if c % 4:
                raise FoldingError(f"{self.name}: channel mix needs channels divisible by 4, got {c}")
            check_fold(self.name, "PE", c // 4, self.pe)
        return c

    def out_format(self, io):
        """(bits, signed) of the output: a box sum grows, a channel mix moves values as they are."""
        if self.is_box:
            return io.out.bits, io.out.signed
        return io.ins[0].bits, io.ins[0].signed

    def hls(self, io):
        c = self.checked(io)
        a, pe, i = self.attrs, self.pe, io.ins[0]
        h, w = a["H"], a["W"]
        out_bits, out_signed = self.out_format(io)
        if self.is_box:
            kernel, targs = "shift_box", [h, w, c, pe, i.bits, hls.cpp_bool(i.signed), out_bits, a["reach"],
                                          hls.cpp_bool(a["axis"] == "h")]
        else:
            kernel, targs = "shift_mix", [h, w, c, pe, i.bits, a["reach"]]
        return hls.kernel_node(self.name, kernel, targs, [hls.stream(c, pe, i.bits, i.signed)],
                               hls.stream(c, pe, out_bits, out_signed), rows_per=h * w)

    def rtl(self, io):
        c = self.checked(io)
        a = self.attrs
        h, w, r = a["H"], a["W"], a["reach"]
        out_bits, out_signed = self.out_format(io)
        if self.is_box:
            ty, tx = (2 * r + 1, 1) if a["axis"] == "h" else (1, 2 * r + 1)
            return self.render_rtl(io, f"circular box sum along {a['axis'].upper()}, reach R = {r}",
                                   "hw/kernels/shift.py box_sum", self.band(), ty, tx, self.band(), w, out_bits,
                                   out_signed, kind="box", axis=a["axis"], reach=r)
        return self.render_rtl(io, f"channel-quarter rolls by S = {r}", "hw/kernels/shift.py channel_mix", h, 1, 1,
                               h, w, out_bits, out_signed, kind="mix", qf=c // 4 // self.pe, sh=r % h, sw=r % w)
