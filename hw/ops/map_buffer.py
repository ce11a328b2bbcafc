"""What the kernels that buffer a map share: their cost, and the RTL template of the token
kernels (ShiftBranch, ShiftConv, TokenPool: templates/rtl/map_tokens.sv.j2).

The kernel buffers a band of the map (:meth:`MapBuffer.band` rows: k for k x k pooling, the
whole map otherwise) in BANKS band banks and emits every output word from its taps, one RAM read
per cycle: max(N_IN, N_OUT x taps) cycles per image with two banks, their sum with one.  The
attention window kernels (AttentionTokens, WindowReverse, PooledUpsample) buffer whole images
the same way with one read per output word.
"""
from __future__ import annotations

import math

from .. import hls, rtl
from ..resources import CONTROL_LUTS, counter_bits, memory_cost
from .base import HwOp, prod


class MapBuffer(HwOp):
    """Base of the kernels that buffer a map (not an op by itself)."""
    banked = True
    ready_registered = True

    def band(self) -> int:
        """Rows of the map the kernel buffers at a time: the whole map unless a subclass says."""
        return self.attrs["H"]

    def taps(self) -> int:
        """Buffer reads per output word."""
        return 1

    def delay(self):
        band = self.band()
        return (0, band) if band < self.attrs["H"] else (1, 0)

    def extra_cost(self, io) -> tuple:
        """(coefficient ROM ((depth, width), in block RAM) or None, DSPs) beyond the map buffer."""
        return None, 0

    def cost(self, io):
        pe, in_bits = self.pe, io.ins[0].bits
        c = self.banked_cycles(math.ceil(max(p.elems for p in io.ins) / pe),
                               math.ceil(io.out.elems / pe) * self.taps())
        # BANKS bands of rows of the input
        mem = self.banks * sum(prod(p.shape) * p.bits for p in io.ins) * self.band() // self.attrs["H"]
        shape = (mem // (pe * in_bits), pe * in_bits)
        rom, dsps = self.extra_cost(io)
        bram, lut_mem, mem = memory_cost(mem, shape, roms=[rom] if rom else [])
        # per lane the tap multiplexer and the output register: 1.5 LUTs per output bit (fitted to
        # Yosys' shift units at PE 2 to 16; 2 counted each bit twice)
        luts = CONTROL_LUTS + pe * io.out.bits * 3 // 2
        return dict(cycles=c["cycles"], mem_bits=int(mem), bram36=bram, luts=int(luts + lut_mem), dsps=int(dsps),
                    **{k: v for k, v in c.items() if k != "cycles"})

    def render_rtl(self, io, title: str, golden: str, band: int, ty: int, tx: int, oh: int, ow: int, out_bits: int,
                   out_signed: bool, rows_out_per_in=(1, 1), **kind):
        """map_tokens.sv.j2 for a band of ``band`` rows, ``ty`` x ``tx`` taps per output word,
        ``oh`` x ``ow`` output tokens per band; ``kind``: the template's kind-specific values."""
        c, pe = io.out.width, self.pe
        in_bits, in_signed = io.ins[0].bits, io.ins[0].signed
        w, cf = self.attrs["W"], c // pe
        kw = dict(kind="", axis="", reach=0, qf=0, sh=0, sw=0, k=1, mode="") | kind
        n_in, n_out = band * w * cf, oh * ow * cf
        module = rtl.module_name("map", self.name)
        src = rtl.render("map_tokens.sv.j2", node=self.name, module=module, title=title, golden=golden,
                         gen=self.source_file(), h=band, w=w,
                         c=c, pe=pe, cf=cf, cfw=counter_bits(cf), signed=in_signed, ib=in_bits, ob=out_bits,
                         xw=max(out_bits, in_bits + 1), n_in=n_in, n_out=n_out, aw=counter_bits(n_in),
                         bw=counter_bits(self.banks * n_in), banks=self.banks, ty=ty, tx=tx, tyw=counter_bits(ty),
                         txw=counter_bits(tx), oh=oh, ow=ow, ohw=counter_bits(oh), oww=counter_bits(ow), **kw)
        return rtl.RtlKernel(self.name, module, src, [hls.stream(c, pe, in_bits, in_signed)],
                             hls.stream(c, pe, out_bits, out_signed), rows_out_per_in=rows_out_per_in)
