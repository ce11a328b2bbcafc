"""The HLS dataflow top of a whole graph and the project folder Vitis HLS takes as is.

:func:`design` is the dataflow netlist (:mod:`hw.dataflow`) with every node's HLS code
(:meth:`hw.ops.HwOp.hls`); :func:`write_sources` renders it into ``src/`` (the kernel library,
one .cpp per node, the top ``bhvit_top`` with its header: templates/hls/top.cpp.j2, top.hpp.j2)
and ``tb/`` (the testbench, top_tb.cpp.j2).  The top has AXI-Stream in (8 pixels per 64-bit
beat) and out (one logit per beat, TLAST on the last), ``images`` and the block control on
AXI-Lite, ``#pragma HLS DATAFLOW`` over one process per node, fan-out and refold, and one
``hls::stream`` per channel with its depth.  :mod:`hw.csim` compiles and runs it with g++.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from . import dataflow, hls, templating
from .dataflow import DesignError, IN_AXIS_BITS, TopDesign  # noqa: F401  (the flows take them from here)

TOP = "bhvit_top"


def design(graph, image_shape, model: str = "model") -> TopDesign:
    """The HLS dataflow top of a folded graph (PE / SIMD read from its nodes)."""
    return dataflow.design(graph, image_shape, model, "hls")


def context(d: TopDesign) -> dict:
    """What the top templates render."""
    per_beat = IN_AXIS_BITS // d.in_bits
    return dict(model=d.model, top=TOP, nodes=d.nodes, channels=d.channels, processes=d.processes,
                in_values=d.in_values, in_bits=d.in_bits, in_axis_bits=IN_AXIS_BITS, in_per_beat=per_beat,
                in_beats=-(-d.in_values // per_beat), out_values=d.out_values, out_bits=d.out_bits,
                out_signed=d.out_signed, out_axis_bits=d.out_axis_bits)


def write_sources(d: TopDesign, folder: Path) -> dict:
    """Render the design into ``folder``: src/ (kernel library, one .cpp per node,
    the top and its header) and tb/ (testbench).  Returns {'sources', 'tb', 'include'}."""
    src, tb = Path(folder) / "src", Path(folder) / "tb"
    for p in (src, tb):
        if p.exists():
            shutil.rmtree(p)
        p.mkdir(parents=True)
    for name in hls.library_files():
        shutil.copyfile(templating.TEMPLATES / hls.LIBRARY / name, src / name)
    ctx = context(d)
    sources = []
    for code in d.nodes:
        f = src / f"{code.fn}.cpp"
        f.write_text(hls.node_source(code))
        sources.append(f)
    (src / f"{TOP}.hpp").write_text(templating.render(f"{hls.LIBRARY}/top.hpp.j2", **ctx))
    top_cpp = src / f"{TOP}.cpp"
    top_cpp.write_text(templating.render(f"{hls.LIBRARY}/top.cpp.j2", **ctx))
    sources.append(top_cpp)
    tb_cpp = tb / f"{TOP}_tb.cpp"
    tb_cpp.write_text(templating.render(f"{hls.LIBRARY}/top_tb.cpp.j2", **ctx))
    return dict(sources=sources, tb=[tb_cpp], include=src)
