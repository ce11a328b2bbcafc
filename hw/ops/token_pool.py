"""TokenPool: k x k pooling of a map with stride k, ``mode`` "max" or "sum" (MSMHA's high-scale
tokens, the binary downsampling's shortcut; a mean's 1/k^2 folds into the Affine after it).

HLS: ``bhvit::token_pool`` (bhvit_tokens.hpp); RTL: map_tokens.sv.j2 on bands of k rows.
"""
from __future__ import annotations

from .. import hls
from .. import kernels as K
from .base import FoldingError, check_fold, map_to_tokens, register, tokens_to_map
from .map_buffer import MapBuffer


@register
class TokenPool(MapBuffer):
    op_type = "TokenPool"
    attr_types = {"H": "i", "W": "i", "k": "i", "mode": "s"}

    @property
    def is_max(self) -> bool:
        return self.attrs["mode"] == "max"

    def execute(self, x):
        a = self.attrs
        pool = K.max_pool if self.is_max else K.sum_pool
        return [map_to_tokens(pool(tokens_to_map(x, a["H"], a["W"]), a["k"]))]

    def torch_forward(self, net, x):
        from ..torch_form import map_to_tokens as tok, tokens_to_map as tmap
        a = self.attrs
        m = tmap(x, a["H"], a["W"])
        b, c, h, w = m.shape
        k = a["k"]
        blocks = m.reshape(b, c, h // k, k, w // k, k)
        return tok(blocks.amax(dim=(3, 5)) if self.is_max else blocks.sum(dim=(3, 5)))

    def band(self):
        """k rows: the outputs of a band of k rows need nothing else."""
        return self.attrs["k"]

    def taps(self):
        return self.attrs["k"] ** 2

    def checked(self, io):
        a = self.attrs
        c, h, w, k = io.out.width, a["H"], a["W"], a["k"]
        check_fold(self.name, "PE", c, self.pe)
        if h % k or w % k:
            raise FoldingError(f"{self.name}: pooling {k}x{k} does not divide the {h}x{w} map")
        return c, h, w, k

    def hls(self, io):
        c, h, w, k = self.checked(io)
        i = io.ins[0]
        out_bits = i.bits if self.is_max else io.out.bits
        return hls.kernel_node(self.name, "token_pool",
                               [h, w, c, self.pe, i.bits, hls.cpp_bool(i.signed), out_bits, k, hls.cpp_bool(self.is_max)],
                               [hls.stream(c, self.pe, i.bits, i.signed)],
                               hls.stream(c, self.pe, out_bits, io.out.signed), rows_per=h * w,
                               rows_out_per_in=((h // k) * (w // k), h * w))

    def rtl(self, io):
        c, h, w, k = self.checked(io)
        a, i = self.attrs, io.ins[0]
        out_bits, out_signed = (i.bits, i.signed) if self.is_max else (io.out.bits, io.out.signed)
        return self.render_rtl(io, f"{k}x{k} {a['mode']} pooling, stride {k}", f"hw/kernels/tokens.py {a['mode']}_pool",
                               self.band(), k, k, 1, w // k, out_bits, out_signed, rows_out_per_in=(w // k, k * w),
                               kind="pool", k=k, mode=a["mode"])
