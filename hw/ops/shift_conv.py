"""ShiftConv: the fused shift unit, a depthwise convolution over the 9-tap cross, circular (BHViT's
shift branches roll) or zero-padded (``pad`` "zero": BinaryViT's average-pool branches).

BHViT's shift module is six branches on one map h (box sums along H and W with reach 1 and 2,
two channel mixes; :mod:`hw.ops.shift_branch`), each scaled by its LayerScale in the block's
output Affine: sum_b (branch_b(h) * m_b) << l_b.  Every branch sums taps of h from the cross
hw.kernels.shift.CROSS_TAPS, so the six terms are one circular depthwise convolution over the
cross with coef[c, t] = sum over the branches b that read tap t at channel c of m_b[c] << (l_b -
l), l = min_b l_b, entering the Affine as one term (x 1) << l: the same integers, exactly.  In
hardware that is one map buffer instead of six and 9 buffer reads per output word instead of 18,
and an Affine with 3 inputs instead of 8.  :meth:`ShiftConv.lower` is the pass that fuses them.

HLS: ``bhvit::shift_conv`` (bhvit_tokens.hpp); RTL: map_tokens.sv.j2 (one multiply-accumulate
per lane and cycle, the coefficients a ROM per (channel fold, tap)).
"""
from __future__ import annotations

import copy

import numpy as np

from .. import hls, rtl
from .. import kernels as K
from ..graph import Graph, Node, dtype_max_abs, sint
from ..kernels.shift import CROSS_TAPS, branch_taps
from ..resources import counter_bits, value_bits
from .affine import Affine
from .base import check_fold, map_to_tokens, register, tokens_to_map
from .map_buffer import MapBuffer
from .shift_branch import ShiftBranch

# A coefficient ROM (one word of PE lanes per channel fold and tap) deeper than this is block
# RAM, a shallower one LUTs: up to 256 words a bit is LUT6s under one MUXF7 / MUXF8 tree, deeper
# ones grow further mux levels (Yosys: the shipped stage-2 ROM, 576 x 16 bits, took about 430
# LUTs against half a RAMB36; stage 1's 144 x 36 bits is cheaper in LUTs).
COEF_LUT_DEPTH = 256


def coef_rom_in_bram(depth: int, width: int) -> bool:
    """Whether a coefficient ROM is block RAM (deeper than COEF_LUT_DEPTH)."""
    return depth > COEF_LUT_DEPTH


@register
class ShiftConv(MapBuffer):
    op_type = "ShiftConv"
    attr_types = {"H": "i", "W": "i", "pad": "s"}
    optional_attrs = ("pad",)
    lowering_order = 10

    @property
    def zero_pad(self) -> bool:
        return self.attrs.get("pad") == "zero"

    def execute(self, x):
        a = self.attrs
        pad = "zero" if self.zero_pad else "circular"
        return [map_to_tokens(K.cross_conv(tokens_to_map(x, a["H"], a["W"]), self.params["coef"], pad))]

    def torch_forward(self, net, x):
        import torch

        from ..torch_form import map_to_tokens as tok, tokens_to_map as tmap
        a = self.attrs
        m = tmap(x, a["H"], a["W"])
        coef = net.p(self.node, "coef")
        # output (h, w) reads x[(h + dh) mod H, (w + dw) mod W]: a roll by (-dh, -dw); zero-padded,
        # the rolled-in rows / columns are 0
        from ..torch_form import shifted
        pad = "zero" if self.zero_pad else "circular"
        y = sum(coef[:, t, None, None] * shifted(shifted(m, -dh, 2, pad), -dw, 3, pad)
                for t, (dh, dw) in enumerate(CROSS_TAPS))
        return tok(y)

    def taps(self):
        return len(CROSS_TAPS)

    def coef_rom(self) -> tuple:
        """(depth, width) of the coefficient ROM as templates/rtl/map_tokens.sv.j2 stores it: word
        f * taps + t holds the PE lanes of channel fold f, tap t."""
        c, taps = np.asarray(self.params["coef"]).shape
        return c // self.pe * taps, self.pe * value_bits(self.params["coef"])

    def extra_cost(self, io):
        rom = self.coef_rom()
        return (rom, coef_rom_in_bram(*rom)), self.pe        # a multiply-accumulate per lane

    def checked(self, io):
        coef = np.asarray(self.params["coef"], dtype=np.int64)
        c = io.out.width
        if coef.shape != (c, len(CROSS_TAPS)):
            raise ValueError(f"{self.name}: coef has shape {coef.shape}, expected ({c}, {len(CROSS_TAPS)})")
        check_fold(self.name, "PE", c, self.pe)
        return coef, c

    def hls(self, io):
        coef, c = self.checked(io)
        a, i = self.attrs, io.ins[0]
        table = hls.int_table("coef", coef, (c, len(CROSS_TAPS)),
                              hls.rows_init(["{" + ", ".join(str(int(v)) for v in r) + "}" for r in coef]))
        return hls.kernel_node(self.name, "shift_conv",
                               [a["H"], a["W"], c, self.pe, i.bits, hls.cpp_bool(i.signed), io.out.bits,
                                hls.cpp_bool(self.zero_pad)],
                               [hls.stream(c, self.pe, i.bits, i.signed)], hls.stream(c, self.pe, io.out.bits, True),
                               [table], rows_per=a["H"] * a["W"])

    def rtl(self, io):
        coef, c = self.checked(io)
        h, w, pe = self.attrs["H"], self.attrs["W"], self.pe
        cf, t = c // pe, len(CROSS_TAPS)
        depth, width = self.coef_rom()           # the ROM as the cost model sizes it
        kb = width // pe
        rom = [(f * t + k, rtl.word_hex(coef[f * pe:(f + 1) * pe, k], kb)) for f in range(cf) for k in range(t)]
        return self.render_rtl(
            io, f"fused shift unit: {'zero-padded' if self.zero_pad else 'circular'} depthwise convolution over the "
                f"9-tap cross", "hw/kernels/shift.py cross_conv",
            h, 1, t, h, w, io.out.bits, True, kind="conv", kb=kb, zero_pad=self.zero_pad,
            taps=[(k, dh % h, dw % w) for k, (dh, dw) in enumerate(CROSS_TAPS)],
            raw_taps=list((k, dh, dw) for k, (dh, dw) in enumerate(CROSS_TAPS)), coef_rom=rom,
            caw=counter_bits(cf * t), coef_attr=rtl.style_attr(coef_rom_in_bram(depth, width)))

    # ---- the pass that introduces it
    @classmethod
    def lower(cls, graph: Graph) -> Graph:
        """The shift module of every block as one ShiftConv (see the module's doc).

        Fused: an Affine's ShiftBranch inputs that all read one tensor, each read by that Affine
        alone, and not popcount inputs (pc_k 0).  Everything else is copied unchanged; the input
        graph is left as it was (QAT keeps training the network's own constants)."""
        nodes = copy.deepcopy(graph.nodes)       # folding sets attributes in place: never share them
        by_out = {n.outputs[0]: n for n in nodes}
        readers: dict = {}          # tensor -> the names of the nodes that read it
        for n in graph.nodes:
            for t in dict.fromkeys(n.inputs):
                readers.setdefault(t, []).append(n.name)
        drop, replace = set(), {}
        for aff in nodes:
            if aff.op != Affine.op_type:
                continue
            pc_k = list(aff.attrs.get("pc_k") or [0] * len(aff.inputs))
            idx = [i for i, t in enumerate(aff.inputs)
                   if t in by_out and by_out[t].op == ShiftBranch.op_type and pc_k[i] == 0
                   and readers.get(t, []) == [aff.name]]
            sources = {by_out[aff.inputs[i]].inputs[0] for i in idx}
            pads = {by_out[aff.inputs[i]].attrs.get("pad") or "circular" for i in idx}
            if not idx or len(sources) != 1 or len(pads) != 1:
                continue
            branches = [by_out[aff.inputs[i]] for i in idx]
            h, w = branches[0].attrs["H"], branches[0].attrs["W"]
            if any((b.attrs["H"], b.attrs["W"]) != (h, w) for b in branches):
                continue
            src = sources.pop()
            sizes = {int(np.size(aff.params[f"m{i}"])) for i in range(len(aff.inputs))} - {1}
            if len(sizes) != 1:             # the channel count from the per-channel multipliers
                continue
            channels = sizes.pop()
            lsh = aff.attrs["lshifts"]
            low = min(lsh[i] for i in idx)
            coef = np.zeros((channels, len(CROSS_TAPS)), dtype=np.int64)
            for i, b in zip(idx, branches):
                m = np.broadcast_to(np.asarray(aff.params[f"m{i}"], dtype=np.int64), (channels,))
                for chans, t in branch_taps(b.attrs["kind"], b.attrs["axis"], b.attrs["reach"], channels):
                    coef[chans, t] += m[chans] << (lsh[i] - low)
            in_max = dtype_max_abs(graph.dtype_of(src))
            name = branches[0].name.rsplit(".", 1)[0]           # "<block>.shift"
            pad_attr = {"pad": "zero"} if pads == {"zero"} else {}      # circular: the attribute left out
            conv = Node(cls.op_type, name, [src], [name], dict(H=h, W=w, **pad_attr), dict(coef=coef),
                        sint(in_max * int(np.abs(coef).sum(axis=1).max(initial=1))))
            keep = [i for i in range(len(aff.inputs)) if i not in idx]
            params = {f"m{j}": aff.params[f"m{i}"] for j, i in enumerate(keep)}
            params[f"m{len(keep)}"] = np.ones(channels, dtype=np.int64)
            params["bias"] = aff.params["bias"]
            attrs = dict(aff.attrs, lshifts=[lsh[i] for i in keep] + [low], pc_k=[pc_k[i] for i in keep] + [0])
            fused = Node(Affine.op_type, aff.name, [aff.inputs[i] for i in keep] + [name], list(aff.outputs), attrs,
                         params, aff.dtype)
            drop.update(b.name for b in branches)
            replace[branches[0].name] = conv
            replace[aff.name] = fused
        out = []
        for n in nodes:
            if n.name in replace:
                out.append(replace[n.name])
            elif n.name not in drop:
                out.append(n)
        return Graph(out, graph.input, graph.output, graph.input_dtype, graph.classes)
