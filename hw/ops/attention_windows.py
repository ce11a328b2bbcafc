"""What MSMHA's window kernels share (AttentionTokens, WindowReverse, PooledUpsample): the window
geometry of a map and the RTL templates' common values.

An attention stream holds, per image, the windows of the map (win x win tokens each, raster
order of windows) each followed by the map's pooled tokens: shape (windows, win^2 + pooled, C).
Each kernel keeps BANKS image buffers (ping-pong): max(words in, words out) cycles per image.
"""
from __future__ import annotations

from .. import hls
from ..resources import counter_bits
from .base import check_fold
from .map_buffer import MapBuffer


class AttentionWindows(MapBuffer):
    """Base of the window kernels (not an op by itself)."""
    attr_types = {"H": "i", "W": "i", "win": "i"}

    def geometry(self, io) -> dict:
        """Checks the map against its windows: {h, w, win, c, n_win, n_loc}."""
        return self.geometry_of(io, self.attrs["win"])

    def geometry_of(self, io, win: int) -> dict:
        a = self.attrs
        h, w, c = a["H"], a["W"], io.out.width
        check_fold(self.name, "PE", c, self.pe)
        if win < 1 or h % win or w % win:
            raise ValueError(f"{self.name}: {win}x{win} windows do not tile the {h}x{w} map")
        return dict(h=h, w=w, win=win, c=c, n_win=(h // win) * (w // win), n_loc=win * win)

    def pooled_per_window(self, io) -> int:
        """Pooled tokens after the win x win of each window of the attention stream (input 0)."""
        pooled = io.ins[0].shape[-2] - self.attrs["win"] ** 2
        if pooled < 0:
            raise ValueError(f"{self.name}: needs the tokens per window (win^2 + pooled), got {io.ins[0].shape[-2]}")
        return pooled

    def in_stream(self, io) -> dict:
        return hls.stream(io.out.width, self.pe, io.ins[0].bits, io.ins[0].signed)

    def rtl_common(self, io) -> dict:
        g = self.geometry(io)
        return dict(node=self.name, h=g["h"], w=g["w"], win=g["win"], cf=g["c"] // self.pe, pe=self.pe,
                    nwy=g["h"] // g["win"] if g["win"] else 1, nwx=g["w"] // g["win"] if g["win"] else 1,
                    bits=counter_bits, banks=self.banks)
