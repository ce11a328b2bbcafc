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

from . import rtlsim
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


def rtl_design(graph, image_shape, model: str = "model"):
    """:func:`hw.hls_top.design` with the RTL kernels (:func:`hw.rtlsim.node_rtl`) as its nodes
    and every gearbox between PEs that do not divide each other split through their gcd: the
    netlist :func:`rtl_top` renders (and :mod:`hw.rtl_resources` counts)."""
    d = design(graph, image_shape, model, codegen=rtlsim.node_rtl)
    _through_gcd(d)
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
