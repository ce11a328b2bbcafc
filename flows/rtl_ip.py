"""The RTL backend's vendor project: the stitched top in an AXI wrapper, packaged as a Vivado IP.

:func:`render_axi_top` gives ``bhvit_top``, a SystemVerilog module with the HLS top's ports
(``in_stream`` 64-bit AXI-Stream, ``out_stream`` AXI-Stream with TLAST on the last beat of a
run, ``s_axi_control`` AXI-Lite with ap_ctrl at 0x00 and ``images`` at 0x10, ``ap_clk``,
``ap_rst_n``) around the stitched top of hw/rtl_top.py; :func:`render_package_tcl` the Vivado
IP-packager script; :func:`write_rtl_project` writes both, the sources and the block-design
script (flows/tcl.py ``render_vivado_tcl``, the same as the HLS backend's) into the project
folder ``build/<model>/rtl_<board>/``.
"""
from __future__ import annotations

from pathlib import Path

from flows.tcl import render_vivado_tcl
from hw import templating

IP = dict(vendor="bhvit.org", library="rtl", name="bhvit_top", version="1.0")
FAMILIES = {"zynq": ["zynq"], "zynquplus": ["zynquplus"]}


def render_axi_top(core_module: str, design) -> str:
    """The AXI wrapper of the stitched top ``core_module`` for ``design`` (hw.rtl_top.rtl_design)."""
    from hw.hls_top import IN_AXIS_BITS
    d = design
    if IN_AXIS_BITS % d.in_bits:
        raise ValueError(f"{d.in_bits}-bit inputs do not tile a {IN_AXIS_BITS}-bit beat")
    return templating.render(
        "rtl_ip/bhvit_axi_top.sv.j2",
        core=core_module, in_axis_bits=IN_AXIS_BITS, per_beat=IN_AXIS_BITS // d.in_bits, in_bits=d.in_bits,
        in_values=d.in_values, in_pe=d.in_fmt["elems"], out_axis_bits=d.out_axis_bits, out_bits=d.out_bits,
        out_signed=bool(d.out_signed), out_values=d.out_values, out_pe=d.out_fmt["elems"])


def render_package_tcl(board, sources, ip_dir: str = "ip", project: str = "bhvit_ip",
                       proj_dir: str = "ip_project") -> str:
    """The IP-packager script: ``sources`` (relative to the folder it runs in) -> ``ip_dir``."""
    if not sources:
        raise ValueError("no sources to package")
    return templating.render(
        "tcl/package_ip.tcl.j2",
        part=board.part, ip_dir=ip_dir, sources=list(sources), project=project, proj_dir=proj_dir, ip=IP,
        families=" ".join(FAMILIES[board.family]))


def write_rtl_project(pr, jobs: int = 4) -> Path:
    """``pr``: flows.common.prepare's result with the RTL design.  Writes src/ (the stitched
    top and its wrapper), package_ip.tcl and vivado.tcl into the project folder."""
    from hw import rtl_top
    from model.checkpoint import atomic_write_bytes
    folder = Path(pr.inp.out)
    top = rtl_top.rtl_top(pr.graph, pr.image_shape, pr.inp.name, d=pr.design)
    files = {f"src/{top.module}.sv": top.source, "src/bhvit_axi_top.sv": render_axi_top(top.module, pr.design)}
    files["package_ip.tcl"] = render_package_tcl(pr.board, [f"src/{top.module}.sv", "src/bhvit_axi_top.sv"])
    files["vivado.tcl"] = render_vivado_tcl(pr.board, ip_repo="ip", ip_vlnv=":".join(IP[k] for k in
                                            ("vendor", "library", "name", "version")), ip_name="bhvit_top",
                                            design=pr.inp.name, in_bits=64, out_bits=pr.design.out_axis_bits,
                                            out_dir="bitstream", jobs=jobs)
    for rel, text in files.items():
        atomic_write_bytes(folder / rel, lambda fh, t=text: fh.write(t.encode()))
    from flows.common import write_folding
    write_folding(folder, pr.graph)
    return folder
