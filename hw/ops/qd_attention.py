"""QDAttention: quantization-decomposition attention of binarized Q, K, V per window and head.

Scores Q_b K_b^T by XNOR-popcount (2d+1 values), softmax numerators from an exp table, the QD
levels sum_sigma [levels * 2 e >= (2 sigma - 1) * sum e] by integer compares (paper eq. 10-11),
then context = levels x V_b (hw/kernels/attention.py qd_attention).  Other quantisers whose
level thresholds on the softmax form an arithmetic progression set ``num1``, ``step`` and ``den``
(level sigma: den e >= (num1 + (sigma - 1) step) sum e; den 0, the default, is QD's): BinaryViT's
c clip(round(A / c), 0, 1) is one level with num1 / den = c / 2.  A window has n queries and
m keys / values (m < n where the keys come from pooled tokens).  Inputs one word of C bits
per token; output one word of C / heads contexts per (query, head); PE keys per cycle.
HLS: ``bhvit::qd_attention`` (bhvit_attention.hpp); RTL: qd_attention.sv.j2.
"""
from __future__ import annotations

import math

import numpy as np

from .. import hls, rtl
from .. import kernels as K
from ..resources import CONTROL_LUTS, counter_bits, lutram_luts, memory_cost, popcount_luts
from .base import HwOp, check_fold, register


@register
class QDAttention(HwOp):
    op_type = "QDAttention"
    attr_types = {"heads": "i", "levels": "i", "num1": "i", "step": "i", "den": "i"}
    optional_attrs = ("num1", "step", "den")
    # adder levels of the RTL kernel's XNOR-popcount tree per pipeline stage (hw.rtl.popcount_sv),
    # as in XnorConv2d and MVAU: the 6-bit counts are registered, so reading q and k, the XNOR-
    # popcount, the exp table and the running total are not one path
    popcount_cut = 3

    def rtl_latency(self, io) -> int:
        """Cycles from the issue of a (query, head)'s last context step to its output word in the
        RTL kernel: the popcount's register stages, E, DEN E and the thresholds, the levels, the
        context, and the output register."""
        return rtl.popcount_stages(io.out.width // self.attrs["heads"], self.popcount_cut) + 4

    def thresholds(self) -> tuple:
        """(num1, step, den) of the level compares; QD's when ``den`` is unset (0)."""
        a = self.attrs
        if not a.get("den"):
            return 1, 2, 2 * a["levels"]
        return int(a["num1"]), int(a["step"]), int(a["den"])

    def split(self, t):
        bw, n, c = t.shape
        heads = self.attrs["heads"]
        return t.reshape(bw, n, heads, c // heads).transpose(0, 2, 1, 3).astype(np.int8)

    def execute(self, qb, kb, vb):
        num1, step, den = self.thresholds()
        ctx = K.qd_attention(self.split(qb), self.split(kb), self.split(vb), self.params["table"], self.attrs["levels"],
                             num1, step, den)
        return [ctx.transpose(0, 2, 1, 3).reshape(qb.shape)]

    def torch_forward(self, net, qb, kb, vb):
        import torch

        from ..torch_form import DT, exact_with_surrogate, split_heads
        heads, levels = self.attrs["heads"], self.attrs["levels"]
        q, k, v = (split_heads(t, heads) for t in (qb, kb, vb))
        d = q.shape[-1]
        num1, step, den = self.thresholds()
        exact = K.qd_attention(*(t.detach().numpy().astype(np.int8) for t in (q, k, v)),
                               net.p(self.node, "table").numpy().astype(np.int64), levels, num1, step, den)
        att = torch.softmax((q @ k.transpose(-1, -2) - d) / math.sqrt(d), dim=-1)
        sur = (levels * att if not self.attrs.get("den") else att * (den / (2.0 * num1))) @ v
        y = exact_with_surrogate(torch.as_tensor(exact, dtype=DT), sur)
        return y.transpose(1, 2).reshape(qb.shape)

    def qat_role(self, key):
        return "table"

    def qonnx_forward(self, net, qb, kb, vb):
        from ..torch_form import DT, split_heads
        heads, levels = self.attrs["heads"], self.attrs["levels"]
        q, k, v = (split_heads(t, heads) for t in (qb, kb, vb))
        d = q.shape[-1]
        e = net.c(self.node, "table")[(q @ k.transpose(-1, -2) + d).long()]      # exp table of the 2d+1 scores
        total = e.sum(-1, keepdim=True)
        num1, step, den = self.thresholds()
        lev = sum((den * e >= (num1 + sigma * step) * total).to(DT) for sigma in range(levels))
        return (lev @ v).transpose(1, 2).reshape(qb.shape)

    def fold_dims(self, io):
        return {"PE": io.ins[1].shape[-2]}          # keys of a window compared per cycle

    def cost(self, io):
        a, pe = self.attrs, self.pe
        windows, n, c = io.ins[0].shape
        m = io.ins[1].shape[-2]
        # load the window's q, k, v (lock step), then per (query, head) scores, then level x V
        cycles = windows * (max(n, m) + a["heads"] * n * 2 * math.ceil(m / pe))
        mem = self.params["table"].size * 17 + (n + 2 * m) * c    # exp table + Q, K and V of one window
        # Q, K and V in LUT RAM, a head's channels picked from them, per key lane the popcount,
        # the levels and the context accumulators (fitted to Yosys: 1,167 / 843 LUTs for the
        # shipped stage-3 / stage-2 units against 1,302 / 858)
        dv = c // a["heads"]
        bram, lut_mem, mem = memory_cost(mem, lut_mem=3 * lutram_luts(max(n, m), c))
        luts = CONTROL_LUTS + 3 * c // 2 + pe * (popcount_luts(dv) + dv * io.out.bits + 150)
        return dict(cycles=int(cycles), mem_bits=int(mem), bram36=bram, luts=int(luts + lut_mem), dsps=self.dsps())

    def dsps(self) -> int:
        """DEN x E per lane and the level thresholds num x total: DSP48s only for constants too long
        for shifts and adds (hw.rtl.const_product_in_fabric; the shipped 6, 1, 3, 5 take none)."""
        num1, step, den = self.thresholds()
        nums = [num1 + sigma * step for sigma in range(self.attrs["levels"])]
        return self.pe * (not rtl.const_product_in_fabric(den)) + sum(not rtl.const_product_in_fabric(n) for n in nums)

    def delay(self):
        return 1, 0          # a whole window before its first context

    def input_room(self, io, idx):
        """A window of q, k and v: the kernel loads one, then scores it without reading, and the
        matrix units before it would otherwise stop for that long (the stage-2 attention took
        5,955 cycles per image instead of 4,352 with two-word FIFOs)."""
        return io.ins[idx].shape[-2]

    def checked(self, io):
        a = self.attrs
        table = np.asarray(self.params["table"], dtype=np.int64).reshape(-1)
        channels, heads, levels, out_bits = io.out.width, a["heads"], a["levels"], io.out.bits
        tokens = io.ins[0].shape[-2]                 # queries of one window
        keys = io.ins[1].shape[-2]                   # keys (and values) of one window
        if channels % heads:
            raise ValueError(f"{self.name}: {heads} heads do not divide {channels} channels")
        d = channels // heads
        if table.size != 2 * d + 1 or table.min(initial=0) < 0:
            raise ValueError(f"{self.name}: the exp table needs {2 * d + 1} non-negative entries, got {table.size}")
        if tokens < 1 or keys < 1:
            raise ValueError(f"{self.name}: QDAttention needs the number of tokens per window")
        if io.ins[2].shape[-2] != keys:
            raise ValueError(f"{self.name}: {keys} keys but {io.ins[2].shape[-2]} values per window")
        check_fold(self.name, "PE", keys, self.pe)
        if levels * keys >= 1 << (out_bits - 1):
            raise ValueError(f"{self.name}: {out_bits} output bits cannot hold +-{levels * keys}")
        eb = max(int(table.max(initial=0)).bit_length(), 1)
        s_in = hls.stream(channels, channels, 1, bipolar=True)
        return table, channels, heads, levels, tokens, keys, d, eb, s_in

    def hls(self, io):
        table, channels, heads, levels, tokens, keys, d, eb, s_in = self.checked(io)
        num1, step, den = self.thresholds()
        out_bits = io.out.bits
        t = hls.Table("table", hls.rom_type(hls.c_int(eb + 1), eb + 1, True), (table.size,), eb + 1,
                      hls.flat_init(table))
        return hls.kernel_node(self.name, "qd_attention",
                               [tokens, keys, channels, heads, levels, f"{num1}ull", f"{step}ull", f"{den}ull", self.pe,
                                eb, out_bits],
                               [s_in, dict(s_in), dict(s_in)], hls.stream(channels, d, out_bits, True), [t],
                               rows_per=tokens, rows_out_per_in=(tokens, tokens),
                               rows_in=(tokens, keys, keys) if keys != tokens else ())

    def rtl(self, io):
        table, channels, heads, levels, tokens, keys, d, eb, s_in = self.checked(io)
        num1, step, den = self.thresholds()
        nums = [num1 + sigma * step for sigma in range(levels)]
        out_bits = io.out.bits
        tb = eb + keys.bit_length()
        module = rtl.module_name("qda", self.name)
        src = rtl.render("qd_attention.sv.j2", node=self.name, module=module, n=tokens, m=keys, c=channels, dv=d,
                         heads=heads, levels=levels, num1=num1, step=step, den=den, nums=nums, pe=self.pe, eb=eb, tb=tb,
                         cb=tb + max(den, nums[-1]).bit_length() + 1, ob=out_bits,
                         pcb=d.bit_length(), rom=[(pc, int(table[2 * pc])) for pc in range(d + 1)], bits=counter_bits,
                         pc_cut=self.popcount_cut, pc_stages=rtl.popcount_stages(d, self.popcount_cut))
        s_in = hls.stream(channels, channels, 1)       # +-1 as bits (1 <-> +1), as every RTL kernel takes them
        return rtl.RtlKernel(self.name, module, src, [s_in, dict(s_in), dict(s_in)],
                             hls.stream(channels, d, out_bits, True), rows_out_per_in=(tokens, tokens))
