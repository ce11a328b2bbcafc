"""What the two convolutions over a buffered map share (XnorConv2d, IntConv2d): the RTL kernel
templates/rtl/map_conv.sv.j2 and its cycle model.

The kernel writes one image into one of BANKS image banks while it convolves the other: per
output token it gathers the k x k taps (one RAM read each, padded taps marked invalid) into a
window register, then its NF (x SF) output steps use them all at once: max(H W, HO WO (k^2 +
steps)) cycles per image with two banks, their sum with one.
"""
from __future__ import annotations

from .. import rtl
from ..resources import counter_bits
from .base import HwOp


def out_size(n: int, k: int, stride: int, pad: int, dilation: int) -> int:
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


class MapConv(HwOp):
    """Base of the convolutions over a buffered map (not an op by itself)."""
    banked = True
    ready_registered = True
    # the kernel alternates phases per output token (gather its taps, then emit its words at one
    # per cycle): its output FIFO holds a token's words, so that the next token's taps are
    # gathered while a slower reader drains this one (with 2 words, the stage-0 convolutions, 25
    # cycles per token on their own, took 9 + 32 behind their PE = 1 readers, and the top ran
    # 5.6 % slower than its cost model)
    burst_output = True

    def delay(self):
        return 1, 0          # the whole map before the first output

    def render_rtl(self, kind: str, h: int, w_: int, k: int, stride: int, pad: int, dilation: int, iwb: int,
                   pe: int, nf: int, sf: int, ob: int, rom: list, ww: int, title: str, golden: str, **extra) -> tuple:
        """Render map_conv.sv.j2: (module, source, rows_out_per_in)."""
        ho, wo = out_size(h, k, stride, pad, dilation), out_size(w_, k, stride, pad, dilation)
        if ho < 1 or wo < 1:
            raise ValueError(f"{self.name}: a {k}x{k} kernel (dilation {dilation}, padding {pad}) on a {h}x{w_} map")
        banks = self.banks
        module = rtl.module_name("xconv" if kind == "xnor" else "iconv", self.name)
        src = rtl.render(
            "map_conv.sv.j2", node=self.name, module=module, kind=kind, title=title, golden=golden,
            gen=self.source_file(), h=h, w=w_, k=k, s=stride, p=pad, d=dilation,
            ho=ho, wo=wo, kk=k * k, iwb=iwb, n_in=h * w_, aw=counter_bits(h * w_), bw=counter_bits(banks * h * w_),
            banks=banks, tw=counter_bits(k * k), kw_=counter_bits(k), ohw=counter_bits(ho), oww=counter_bits(wo), pe=pe,
            ob=ob, nf=nf, sf=sf, nfw=counter_bits(nf), sfw=counter_bits(sf),
            steps=f"NF x SF = {nf} x {sf}" if sf > 1 else f"NF = {nf}", rom=rom, rw=counter_bits(len(rom)), ww=ww,
            rom_attr=rtl.weight_rom_attr(len(rom), ww), **extra)
        return module, src, (ho * wo, h * w_)
