"""What Affine and RPReLU share: a per-channel fixed-point kernel with one rounding.

Both multiply each input by a per-channel integer multiplier (RPReLU: one of two by the sign),
add a bias per channel (or per token and channel: a position embedding), round half up once
(``>> shift``) and saturate to ``bits``.  HLS: templates/hls/fixed_node.hpp.j2; RTL:
templates/rtl/fixed.sv.j2, whose constant tables (:func:`fixed_tables`) go to block RAM or LUTs.
"""
from __future__ import annotations

import math

import numpy as np

from .. import hls, rtl, templating
from ..resources import CONTROL_LUTS, block_ram36, counter_bits, rom_luts, value_bits, varying_bits
from .base import HwOp, check_fold

# The per-channel tables of an Affine / RPReLU kernel (templates/rtl/fixed.sv.j2): from this size on a
# table group is a block-RAM ROM.  Yosys maps a table of LUT ROM at about 4 LUTs per bit of word
# width per 256 words (a 256 x 36-bit group: 144 LUTs); one RAMB18 holds up to 512 x 36.
FIXED_TABLE_BRAM_BITS = 8 * 1024

# Node attribute: TABLE_BRAM = 0 keeps an Affine / RPReLU kernel's tables in LUTs whatever their size
# (flows.common.fold_for_board sets it where the block RAM runs short); absent or 1: by size.
TABLE_BRAM = "TABLE_BRAM"


def fixed_tables(mult_bits: list, bias_bits: int, channels: int, pe: int, rows: int, bram: bool = True) -> list:
    """The ROMs of an Affine / RPReLU kernel, [(name, depth, width, style)], style "block" (block
    RAM) or "logic" (LUTs): "tab" holds, per channel fold, the PE lanes of every multiplier table
    (``mult_bits``: their widths) and of the bias where it does not change with the row; "btab"
    the bias of each of ``rows`` rows (T x CF words) where it does.  A group of at least
    FIXED_TABLE_BRAM_BITS is "block" unless ``bram`` is False."""
    cf = channels // pe
    width = pe * (sum(mult_bits) + (bias_bits if rows == 1 else 0))
    groups = ([("tab", cf, width)] if width else []) + ([("btab", rows * cf, pe * bias_bits)] if rows > 1 else [])
    return [(n, d, w, "block" if bram and d * w >= FIXED_TABLE_BRAM_BITS else "logic") for n, d, w in groups]


class FixedPoint(HwOp):
    """Base of Affine and RPReLU (not an op by itself)."""
    attr_types = {"shift": "i", "bits": "i"}
    table_placement = True
    kind = ""                   # "affine" | "rprelu": the template's flavour

    def multipliers(self) -> dict:
        """{table name: per-channel multipliers}."""
        raise NotImplementedError

    def product_multipliers(self) -> list:
        """The multiplier tables that cost a table and a product (a DSP48 per lane)."""
        raise NotImplementedError

    def mult_keys(self, i: int) -> list:
        """The multiplier tables input ``i`` is multiplied by."""
        raise NotImplementedError

    @property
    def tables_in_bram(self) -> bool:
        return bool(int(self.attrs.get(TABLE_BRAM, 1)))

    def requant(self, net, acc):
        """round half up (acc * 2**-shift) and saturate: one Brevitas FLOOR quantizer (QONNX form)."""
        s = self.attrs["shift"]
        return net.module_of(self.node)(acc * 2.0 ** -s + (0.5 if s > 0 else 0.0))

    def qonnx_modules(self, net):
        from ..torch_form import int_quant
        return {"quant": int_quant(self.attrs["bits"])}

    # ---- cost
    def cost(self, io):
        pe = self.pe
        c = io.out.width
        bias = np.asarray(self.params["bias"])
        mults = self.product_multipliers()
        # per-channel multiplier and (per-row) bias tables at the widths the kernels store them, by
        # the bits that vary (synthesis drops the rest)
        tables = fixed_tables([varying_bits(m) for m in mults], varying_bits(bias), c, pe,
                              1 if bias.size in (1, c) else bias.size // c, self.tables_in_bram)
        bram = sum(block_ram36(d, w, 0) for _, d, w, style in tables if style == "block")
        lut = sum(rom_luts(d, w) for _, d, w, style in tables if style == "logic")
        luts = CONTROL_LUTS + pe * (io.out.bits + 8)
        return dict(cycles=int(math.ceil(io.out.elems / pe)), mem_bits=int(sum(d * w for _, d, w, _ in tables)),
                    bram36=bram, luts=int(luts + lut), dsps=int(self.dsps()))

    def dsps(self) -> int:
        return self.pe * len(self.product_multipliers())

    # products that one stage of the RTL kernel adds to the running sum: with one, each stage is a
    # DSP48E1 multiply and its post-adder on the previous stage's sum (or the bias), which meets a
    # 100 MHz clock on a 7-series -1 part in the timing estimate (docs/timing.md); two per stage
    # left a fabric adder between the DSPs of some kernels, and the 4-product chain of the
    # attention context took 12 ns
    dsp_chain = 1

    def sum_stages(self) -> int:
        """Stages of the RTL kernel's multiply-add: the bias and the first dsp_chain products in
        the first, dsp_chain more in each further one (their inputs delayed to match)."""
        return max(1, math.ceil(self.dsps() // self.pe / self.dsp_chain))

    def rtl_latency(self) -> int:
        """Cycles from an input word to its output word in the RTL kernel: the multiply-add
        stages and the rounding into the output register."""
        return self.sum_stages() + 1

    # ---- code generation
    def kernel_args(self, io) -> dict:
        """What both kernels need: multipliers and bias at the stream width, the accumulator bound."""
        a, pe = self.attrs, self.pe
        n = len(io.ins)
        in_bits = [p.bits for p in io.ins]
        c = io.out.width
        mults = {k: np.broadcast_to(np.asarray(v, dtype=np.int64).reshape(-1), (c,))
                 for k, v in self.multipliers().items()}
        check_fold(self.name, "PE", c, pe)
        lshifts = [int(v) for v in (a.get("lshifts") or [0] * n)]
        pc_k = [int(v) for v in (a.get("pc_k") or [0] * n)]
        if any(v < 0 for v in lshifts):
            raise ValueError(f"{self.name}: negative left shift {lshifts}")
        bias = np.asarray(self.params["bias"], dtype=np.int64)
        bias = np.broadcast_to(bias.reshape(-1), (c,)).reshape(1, c) if bias.size in (1, c) else bias.reshape(-1, c)
        # accumulator: large enough for the worst case of every term plus the bias
        bound = int(np.abs(bias).max(initial=0))
        for i in range(n):
            xmax = (1 << in_bits[i]) if not pc_k[i] else 2 * (1 << in_bits[i]) + pc_k[i]
            bound += xmax * int(max(np.abs(mults[k]).max(initial=0) for k in self.mult_keys(i))) << lshifts[i]
        return dict(c=c, in_bits=in_bits, signed=[p.signed for p in io.ins], mults=mults, lshifts=lshifts,
                    pc_k=pc_k, bias=bias, acc_bits=bound.bit_length() + 2)

    def hls(self, io):
        k = self.kernel_args(io)
        if k["acc_bits"] > 62:
            raise ValueError(f"{self.name}: accumulator of {k['acc_bits']} bits exceeds the 62 the golden model keeps "
                             "exact")
        pe, c, bias = self.pe, k["c"], k["bias"]
        fn = hls.c_name(self.name)
        n = len(io.ins)
        inputs = [dict(bits=k["in_bits"][i], signed=bool(k["signed"][i]), lshift=k["lshifts"][i], pc_k=k["pc_k"][i])
                  for i in range(n)]
        tables = [hls.int_table(name, v, (pe, c // pe), hls.lanes_init(v, pe)) for name, v in k["mults"].items()]
        tables.append(hls.int_table("bias", bias, (bias.shape[0], pe, c // pe),
                                    "{" + ", ".join(hls.lanes_init(row, pe) for row in bias) + "}"))
        code = templating.render(f"{hls.LIBRARY}/fixed_node.hpp.j2", kind=self.kind, name=self.name, fn=fn, pe=pe,
                                 cf=c // pe, inputs=inputs, tables=tables, bias_rows=bias.shape[0],
                                 acc_bits=k["acc_bits"], shift=self.attrs["shift"], out_bits=self.attrs["bits"])
        return hls.NodeCode(self.name, fn, code, [hls.stream(c, pe, k["in_bits"][i], bool(k["signed"][i]))
                                                  for i in range(n)], hls.stream(c, pe, self.attrs["bits"], True))

    def rtl(self, io):
        k = self.kernel_args(io)
        pe, c, bias, mults = self.pe, k["c"], k["bias"], k["mults"]
        shift, out_bits = int(self.attrs["shift"]), self.attrs["bits"]
        if out_bits < 2:
            raise ValueError(f"{self.name}: {out_bits} output bits")
        n = len(io.ins)
        ab = k["acc_bits"]
        # a multiplier of 1 on every channel (the fused shift unit's term, hw.ops.shift_conv) needs
        # no table and no product
        units = {key for key, v in mults.items() if self.kind == "affine" and bool(np.all(v == 1))}
        mlist = [dict(name=key, bits=value_bits(v)) for key, v in mults.items() if key not in units]
        mb = {m["name"]: m["bits"] for m in mlist} | dict.fromkeys(units, 2)
        inputs, products = [], 0
        for i in range(n):
            xb = max(k["in_bits"][i] + 2, k["pc_k"][i].bit_length() + 2)
            mbits = max(mb[key] for key in self.mult_keys(i))
            unit = f"m{i}" in units
            # the stage that adds the term: a product goes to the DSP cascade of its stage
            stage = 0 if unit else products // self.dsp_chain
            products += not unit
            inputs.append(dict(idx=i, bits=k["in_bits"][i], signed=bool(k["signed"][i]), lshift=k["lshifts"][i],
                               pc_k=k["pc_k"][i], xb=xb, mbits=mbits, pb=xb + mbits, unit=unit,
                               stage=stage))
        bb = value_bits(bias)
        cf, t = c // pe, bias.shape[0]
        # the table groups (fixed_tables): "tab" = every multiplier's lanes (+ the bias's when it
        # does not change with the row) per channel fold, "btab" = the bias per row and fold
        tab_fields = [(m["name"], m["bits"], mults[m["name"]]) for m in mlist] + ([("bias", bb, bias[0])] if t == 1 else [])
        # block RAM or LUTs as the cost model decides, by the bits that vary (synthesis drops the rest)
        style_of = {g: st for g, _, _, st in fixed_tables([varying_bits(mults[m["name"]]) for m in mlist],
                                                          varying_bits(bias), c, pe, t, self.tables_in_bram)}
        groups = []
        for gname, depth, width, _ in fixed_tables([m["bits"] for m in mlist], bb, c, pe, t, self.tables_in_bram):
            style = style_of.get(gname, "logic")
            if gname == "tab":          # field after field, each PE lanes wide
                words, off, fl = [0] * cf, 0, []
                for fname, bits, vals in tab_fields:
                    for f in range(cf):
                        words[f] |= int(rtl.word_hex(vals[f * pe:(f + 1) * pe], bits), 16) << off
                    fl.append((fname, off, pe * bits))
                    off += pe * bits
                addr = "ca"
            else:
                words = [int(rtl.word_hex(bias[r][f * pe:(f + 1) * pe], bb), 16) for r in range(t) for f in range(cf)]
                fl, addr = [("bias", 0, pe * bb)], "ba"
            groups.append(dict(name=gname, depth=depth, width=width, style=style, addr=addr,
                               aw=counter_bits(cf) if addr == "ca" else counter_bits(t * cf), fields=fl,
                               rom=[(a, format(v, "x")) for a, v in enumerate(words)]))
        module = rtl.module_name("fixed", self.name)
        src = rtl.render("fixed.sv.j2", node=self.name, module=module, kind=self.kind, c=c, pe=pe, cf=cf, t=t,
                         inputs=inputs, mults=mlist, bb=bb, groups=groups, ab=ab, shift=shift, ob=out_bits,
                         vw=max(ab + 2 + max(-shift, 0), out_bits + 1),
                         m_sel_bits=max([m["bits"] for m in mlist], default=2), ns=self.sum_stages())
        return rtl.RtlKernel(self.name, module, src, [hls.stream(c, pe, k["in_bits"][i], bool(k["signed"][i]))
                                                      for i in range(n)], hls.stream(c, pe, out_bits, True))
