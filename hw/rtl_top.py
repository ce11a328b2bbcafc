"""The stitched RTL top of a whole graph: the dataflow netlist in SystemVerilog.

:func:`rtl_design` is the netlist of :mod:`hw.dataflow` with every node's RTL kernel
(:meth:`hw.ops.HwOp.rtl`): the same channels (with their FIFO depths), fan-outs and re-foldings
as the HLS top, every gearbox between PEs that do not divide each other split through their gcd,
and the two-word FIFOs the top does without replaced by wires (:func:`direct_links`).
:func:`rtl_top` renders it (templates/rtl/top.sv.j2) with ``bhvit_fifo`` / ``bhvit_fork`` /
``bhvit_refold`` instances (templates/rtl/fifo.sv, stream.sv) around the nodes' modules.  The
result is an :class:`hw.rtl.RtlKernel` whose input is the first node's pixel stream and whose
output is the last node's stream, so :func:`hw.rtlsim.simulate` runs it like any kernel (random
gaps, back-pressure, deadlock report).  The AXI-Stream byte packing of the HLS top (8 pixels per
64-bit beat) is the DMA side of the board flow and is not part of this top.
"""
from __future__ import annotations

import math
from dataclasses import replace

from . import dataflow, rtl, templating
from .dataflow import DEFAULT_DEPTH, Channel, Process
from .ops import op_of
from .resources import fifo_parts
from .rtl import RtlKernel, word_bits

# The most kernels, forks and gearboxes one ready signal may pass through between two registers:
# a two-word FIFO stays where a direct link would make the path longer (a level of logic and its
# route each, about a nanosecond on a 7-series part; the clock period at 100 MHz is 10 ns).
READY_CHAIN = 4


def through_gcd(d) -> None:
    """A gearbox needs one PE to divide the other: re-fold through their gcd otherwise."""
    procs = []
    for p in d.processes:
        a, b = (p.params.get("in_pe"), p.params.get("out_pe")) if p.kind == "refold" else (1, 1)
        if a % b and b % a:
            g = math.gcd(a, b)
            src_ch = next(c for c in d.channels if c.var == p.outs[0])
            mid = Channel(src_ch.var + "_gcd", src_ch.label + ".gcd", g * p.params["ob"], 2,
                          src_ch.words_per_image * p.params["out_pe"] // g)
            d.channels.append(mid)
            procs.append(replace(p, outs=[mid.var], params=dict(p.params, out_pe=g)))
            procs.append(Process("refold", p.comment + f" (second half, PE {g} -> {b})", [mid.var], p.outs,
                                 dict(p.params, ib=p.params["ob"], in_pe=g)))
        else:
            procs.append(p)
    d.processes = procs


def direct_links(d, max_chain: int = READY_CHAIN, registered=(), bursty=()) -> list:
    """Replace two-word FIFOs by wires (depth 0) where the stitched top does not need them, and
    return the labels of those channels.

    Every kernel registers its output (valid and data), so a direct link keeps one word per cycle
    and adds no combinational valid path; what it lengthens is the ready path, which then runs
    from the reader's input ready into the writer.  Going from the output backwards, a channel
    becomes a wire if the ready path that ends in its writer passes through at most ``max_chain``
    processes; it goes on upstream only through writers whose input ready depends on their output
    ready (all but ``registered``, the names of the kernels whose input ready is a register's:
    :attr:`hw.ops.HwOp.ready_registered`).  The inputs of ``bursty`` kernels
    (:meth:`hw.ops.HwOp.reads_in_bursts`) keep their FIFOs.  Only channels the design gave
    DEFAULT_DEPTH are candidates: the deeper ones balance joins or hold a burst, and the top's own
    input and output keep their FIFOs.  The measured FIFO sizing (flows/sim.py) then works on the
    FIFOs that are left."""
    chan = {c.var: c for c in d.channels}
    reader = {v: p for p in d.processes for v in p.ins}
    chain: dict = {}     # id(process) -> processes the longest ready path into its input ready passes
    links = []
    for p in reversed(d.processes):
        if p.kind in ("axis_in", "axis_out"):
            chain[id(p)] = 0
            continue
        passes = p.kind in ("fanout", "refold") or (p.kind == "node" and p.params["code"].name not in registered)
        longest = 0
        for v in p.outs:
            c, q = chan[v], reader.get(v)
            if (q is None or q.kind == "axis_out" or c.depth != DEFAULT_DEPTH
                    or (q.kind == "node" and q.params["code"].name in bursty)):
                continue
            if chain[id(q)] + 1 <= max_chain:
                c.depth = 0
                links.append(c.label)
                longest = max(longest, chain[id(q)])
        chain[id(p)] = 1 + longest if passes else 0
    return links


def rtl_design(graph, image_shape, model: str = "model", max_chain: int = READY_CHAIN):
    """The dataflow netlist with the RTL kernels as its nodes, gearboxes through the gcd, and
    direct links (``max_chain`` 0 keeps every FIFO): what :func:`rtl_top` renders (and
    :mod:`hw.yosys` counts)."""
    d = dataflow.design(graph, image_shape, model, "rtl")
    through_gcd(d)
    if max_chain:
        ops = [op_of(n) for n in graph.nodes]
        direct_links(d, max_chain, {op.name for op in ops if op.ready_registered},
                     {op.name for op in ops if op.reads_in_bursts()})
    return d


def rtl_top(graph, image_shape, model: str = "model", d=None) -> RtlKernel:
    """The whole graph as one SystemVerilog top (folding from the nodes' PE / SIMD); ``d``: its
    :func:`rtl_design`, where the caller has it already."""
    d = d or rtl_design(graph, image_shape, model)
    module = rtl.module_name("top", model)
    procs = []
    for p in d.processes:
        if p.kind == "node":
            procs.append(dict(kind="node", module=p.params["code"].module, ins=p.ins, outs=p.outs, comment=p.comment))
        elif p.kind in ("fanout", "refold"):
            procs.append(dict(kind=p.kind, ins=p.ins, outs=p.outs, comment=p.comment, **p.params))
    in_var = next(p for p in d.processes if p.kind == "axis_in").outs[0]
    out_var = next(p for p in d.processes if p.kind == "axis_out").ins[0]
    top = rtl.render("top.sv.j2", fifo_parts=fifo_parts, model=model, module=module, n_nodes=len(d.nodes),
                     channels=d.channels, procs=procs, in_var=in_var, out_var=out_var, in_bits=word_bits(d.in_fmt),
                     out_bits=word_bits(d.out_fmt))
    parts = [templating.read(f"{rtl.LIBRARY}/fifo.sv"), templating.read(f"{rtl.LIBRARY}/stream.sv")]
    parts += [k.source for k in d.nodes] + [top]
    rows_in = d.in_values // d.in_fmt["width"]
    rows_out = d.out_values // d.out_fmt["width"]
    return RtlKernel(model, module, "\n".join(parts), [dict(d.in_fmt)], dict(d.out_fmt),
                     rows_out_per_in=(rows_out, rows_in))


def measured_bottlenecks(d, stalls: dict, cycles: int, top: int = 5) -> list:
    """The kernels that hold the pipeline back, from a simulation's FIFO stall counts
    (:attr:`hw.rtlsim.RtlResult.stalls` of :func:`rtl_top`): a node whose input FIFOs' writers
    are often blocked (full) while its own output FIFO rarely is, is slower than what feeds it
    and not waiting on what reads it.  Returns up to ``top`` rows (node, fraction of cycles an
    input was full, fraction its output was full), the most telling first."""
    label = {c.var: c.label for c in d.channels}
    rows = []
    for p in d.processes:
        if p.kind != "node" or not p.ins:
            continue
        full_in = max(stalls.get(label[v], (0, 0))[0] for v in p.ins) / cycles
        full_out = stalls.get(label[p.outs[0]], (0, 0))[0] / cycles
        if full_in > full_out:
            rows.append((p.comment.split(" (")[0], full_in, full_out))
    rows.sort(key=lambda r: r[2] - r[1])
    return rows[:top]
