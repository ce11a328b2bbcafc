"""The stitched RTL top of a whole graph: the HLS top's netlist, in SystemVerilog.

:func:`hw.hls_top.design` with :func:`hw.rtlsim.node_rtl` as the code generator gives the
same channels (with their FIFO depths), fan-outs and re-foldings as the HLS top; here they
become ``bhvit_fifo`` / ``bhvit_fork`` / ``bhvit_refold`` instances (templates/rtl/fifo.sv,
stream.sv) around the nodes' modules.  The result is an :class:`hw.rtlsim.RtlKernel` whose
input is the first node's pixel stream and whose output is the last node's stream, so
:func:`hw.rtlsim.simulate` runs it like any kernel (random gaps, back-pressure, deadlock
report).  The AXI-Stream byte packing of the HLS top (8 pixels per 64-bit beat) is the
DMA side of the board flow and is not part of this top.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from . import rtlsim
from .cost import BANKED_OPS
from .hls_top import Channel, Process, design
from .rtlsim import RtlKernel, TEMPLATES, _env, _module_name, word_bits, wrapper_source


def refold_rtl(name: str, c: int, ib: int, ob: int, signed: bool, in_pe: int, out_pe: int) -> RtlKernel:
    """``bhvit_refold`` alone, as a kernel (rows of ``c`` values), for tests and synthesis counts."""
    from .csim import stream
    module = _module_name("refold", name)
    src = wrapper_source(module, (TEMPLATES / "stream.sv").read_text(), in_pe * ib, out_pe * ob,
                         f"bhvit_refold #(.IB({ib}), .OB({ob}), .SIGNED(1'b{int(signed)}), .IN_PE({in_pe}), "
                         f".OUT_PE({out_pe})) g")
    return RtlKernel(name, module, src, [stream(c, in_pe, ib, signed)], stream(c, out_pe, ob, signed))


def fork_rtl(name: str, bits: int, n: int) -> RtlKernel:
    """``bhvit_fork`` of ``bits``-bit words to ``n`` readers alone, for synthesis counts (its
    output port is the ``n`` copies side by side with one valid / ready bit each, which the
    single-output simulation harness does not drive)."""
    from .csim import stream
    module = _module_name("fork", name)
    src = wrapper_source(module, (TEMPLATES / "stream.sv").read_text(), bits, n * bits,
                         f"bhvit_fork #(.WIDTH({bits}), .N({n})) g", n_out=n)
    return RtlKernel(name, module, src, [stream(1, 1, bits)], stream(n, n, bits))


def _through_gcd(d) -> None:
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
            procs.append(Process("", p.comment + f" (second half, PE {g} -> {b})", "refold", [mid.var], p.outs,
                                 dict(p.params, ib=p.params["ob"], in_pe=g)))
        else:
            procs.append(p)
    d.processes = procs


# Kernels whose input ready comes from their own registers only (a free bank of the map buffer,
# the LayerNorm's input state), never from their output's ready: map_conv.sv.j2, map_tokens.sv.j2,
# repeat_channels.sv.j2, attention_tokens.sv.j2, window_reverse.sv.j2, pooled_upsample.sv.j2,
# layernorm.sv.j2 (tests/test_rtl_top.py checks the generated sources).  Every other kernel, the
# forks and the gearboxes pass a ready through one level of logic (in_ready = !out_valid || out_ready).
READY_REGISTERED_OPS = BANKED_OPS + ("RepeatChannels", "IntLayerNorm")
# The most kernels, forks and gearboxes one ready signal may pass through between two registers:
# a two-word FIFO stays where a direct link would make the path longer (a level of logic and its
# route each, about a nanosecond on a 7-series part; the clock period at 100 MHz is 10 ns).
READY_CHAIN = 4


def reads_in_bursts(node) -> bool:
    """A matrix unit (mvau_xnor.sv.j2, int_linear.sv.j2) reads a row's SF > 1 input words back
    to back in its first output fold and none in the others: the two-word FIFO in front of it
    lets the gearbox or kernel before it have the next word ready (without it, stage 1's second
    MLP matrix waited 64 cycles for its second word per token, and the shipped top took 12,224
    cycles per image instead of 9,440)."""
    if node.op == "MVAU":
        return node.attrs["MW"] // node.attrs.get("SIMD", 1) > 1
    if node.op == "IntLinear":
        return int(np.prod(node.params["w"].shape[1:])) // node.attrs.get("SIMD", 1) > 1
    return False


def direct_links(d, max_chain: int = READY_CHAIN, registered=(), bursty=()) -> list:
    """Replace two-word FIFOs by wires (depth 0) where the stitched top does not need them, and
    return the labels of those channels.

    Every kernel registers its output (valid and data), so a direct link keeps one word per cycle
    and adds no combinational valid path; what it lengthens is the ready path, which then runs
    from the reader's input ready into the writer.  Going from the output backwards, a channel
    becomes a wire if the ready path that ends in its writer passes through at most ``max_chain``
    processes; it goes on upstream only through writers whose input ready depends on their output
    ready (all but ``registered``, the names of the kernels whose input ready is a register's).
    The inputs of ``bursty`` kernels (:func:`reads_in_bursts`) keep their FIFOs.
    Only channels the design gave DEFAULT_DEPTH are candidates: the deeper ones balance joins or
    hold a burst, and the top's own input and output keep their FIFOs.  The measured FIFO sizing
    (flows/sim.py) then works on the FIFOs that are left."""
    from .hls_top import DEFAULT_DEPTH
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
    """:func:`hw.hls_top.design` with the RTL kernels (:func:`hw.rtlsim.node_rtl`) as its nodes,
    every gearbox between PEs that do not divide each other split through their gcd, and the
    two-word FIFOs the top does without replaced by wires (:func:`direct_links`; ``max_chain`` 0
    keeps them all): the netlist :func:`rtl_top` renders (and :mod:`hw.rtl_resources` counts)."""
    d = design(graph, image_shape, model, codegen=rtlsim.node_rtl)
    _through_gcd(d)
    if max_chain:
        ops = {n.name: n.op for n in graph.nodes}
        direct_links(d, max_chain, {k.name for k in d.nodes if ops.get(k.name) in READY_REGISTERED_OPS},
                     {n.name for n in graph.nodes if reads_in_bursts(n)})
    return d


def rtl_top(graph, image_shape, model: str = "model", d=None) -> RtlKernel:
    """The whole graph as one SystemVerilog top (folding from the nodes' PE / SIMD); ``d``: its
    :func:`rtl_design`, where the caller has it already."""
    d = d or rtl_design(graph, image_shape, model)
    module = _module_name("top", model)
    procs = []
    for p in d.processes:
        if p.kind == "node":
            procs.append(dict(kind="node", module=p.params["code"].module, ins=p.ins, outs=p.outs, comment=p.comment))
        elif p.kind in ("fanout", "refold"):
            procs.append(dict(kind=p.kind, ins=p.ins, outs=p.outs, comment=p.comment, **p.params))
    in_var = next(p for p in d.processes if p.kind == "axis_in").outs[0]
    out_var = next(p for p in d.processes if p.kind == "axis_out").ins[0]
    from .cost import fifo_parts
    top = _env().get_template("top.sv.j2").render(
        fifo_parts=fifo_parts, model=model, module=module, n_nodes=len(d.nodes), channels=d.channels, procs=procs, in_var=in_var,
        out_var=out_var, in_bits=word_bits(d.in_fmt), out_bits=word_bits(d.out_fmt))
    parts = [(TEMPLATES / "fifo.sv").read_text(), (TEMPLATES / "stream.sv").read_text()]
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
