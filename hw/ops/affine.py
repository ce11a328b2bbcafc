"""Affine: sum_i (x_i * m_i[c]) << l_i + bias, rounded once and saturated.

The fixed-point glue of the network: alpha * popcount, BN, LayerScale, shortcuts and residual
adds fold into it (hw.intnet).  A popcount input (``pc_k`` = K) first becomes the +-1 dot
product 2 x - K; the bias is per channel or per token and channel.  Kernels: hw.ops.fixed_point.

:meth:`Affine.lower` is a streamlining pass: a term whose multiplier is the same power of two
2**k on every channel (a shortcut's or a residual's, where the folding put the other terms'
scale into theirs) becomes the unit term x << (l + k): the same integers, and in hardware a
wire shift instead of a table and a DSP48 per lane.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import kernels as K
from ..graph import Graph
from .base import register
from .fixed_point import FixedPoint


def power_of_two_exponent(m) -> int | None:
    """k where every entry of ``m`` is the same 2**k (k >= 0), else None."""
    v = np.unique(np.asarray(m, dtype=np.int64))
    if v.size != 1 or v[0] < 1 or int(v[0]) & (int(v[0]) - 1):
        return None
    return int(v[0]).bit_length() - 1


@register
class Affine(FixedPoint):
    op_type = "Affine"
    attr_types = {"lshifts": "ints", "shift": "i", "bits": "i", "pc_k": "ints"}
    kind = "affine"

    def multipliers(self):
        return {f"m{i}": self.params[f"m{i}"] for i in range(len(self.node.inputs))}

    def product_multipliers(self):
        # a term whose multiplier is 1 on every channel (the fused shift unit's) is added as is
        return [m for m in (np.asarray(v) for v in self.multipliers().values()) if not np.all(m == 1)]

    def mult_keys(self, i):
        return [f"m{i}"]

    def pc_k(self, i: int) -> int:
        return self.attrs["pc_k"][i] if self.attrs.get("pc_k") else 0

    def execute(self, *xs):
        terms = []
        for i, x in enumerate(xs):
            k = self.pc_k(i)
            if k:                           # MVAU popcount of matches -> +-1 dot product
                x = 2 * x - k
            terms.append((x, self.params[f"m{i}"], self.attrs["lshifts"][i]))
        return [K.affine_sum(terms, self.params["bias"], self.attrs["shift"], self.attrs["bits"])]

    def terms(self, xs, mult):
        acc = 0
        for i, x in enumerate(xs):
            k = self.pc_k(i)
            if k:
                x = 2 * x - k
            acc = acc + mult(i, x)
        return acc

    def torch_forward(self, net, *xs):
        from ..torch_form import rshift_round, saturate
        a = self.attrs
        acc = self.terms(xs, lambda i, x: x * net.p(self.node, f"m{i}") * 2.0 ** a["lshifts"][i])
        acc = acc + net.p(self.node, "bias")
        return saturate(rshift_round(acc, a["shift"]), a["bits"])

    def qonnx_forward(self, net, *xs):
        a = self.attrs
        acc = self.terms(xs, lambda i, x: x * (net.c(self.node, f"m{i}") * 2.0 ** a["lshifts"][i]))
        return self.requant(net, acc + net.c(self.node, "bias"))

    def intnet_params(self, vals):
        return {"m": [vals[f"m{i}"] for i in range(len(self.node.inputs))], "bias": vals["bias"]}

    # ---- the streamlining pass (hw.passes.lower), after ShiftConv's fusion
    lowering_order = 20

    @classmethod
    def lower(cls, graph: Graph) -> Graph:
        """Every Affine term whose multiplier is one power of two 2**k on all channels as the
        unit term: multiplier 1, left shift l + k.  x * 2**k << l == x << (l + k), so every
        output is the same integer; other nodes are copied as they are and the input graph is
        left unchanged."""
        nodes = copy.deepcopy(graph.nodes)       # folding sets attributes in place: never share them
        for n in nodes:
            if n.op != cls.op_type:
                continue
            lsh = list(n.attrs.get("lshifts") or [0] * len(n.inputs))
            for i in range(len(n.inputs)):
                m = np.asarray(n.params[f"m{i}"])
                k = power_of_two_exponent(m)
                if k:                           # k = 0 is the unit term already
                    n.params[f"m{i}"] = np.ones_like(m, dtype=np.int64)
                    lsh[i] += k
            n.attrs["lshifts"] = lsh
        return Graph(nodes, graph.input, graph.output, graph.input_dtype, graph.classes)
