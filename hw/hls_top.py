"""The HLS dataflow top of a whole graph: streams, fan-outs, re-folding, AXI ports.

:func:`design` turns a folded :class:`hw.graph.Graph` into a :class:`TopDesign`:
every node's generated code (:func:`hw.csim.node_code`), one ``hls::stream``
per producer -> consumer edge, a ``fan_out`` process where a tensor has several
readers (a dataflow stream has exactly one), a ``refold`` process where the
producer and the consumer pack a row differently (different PE), and the
AXI-Stream adapters at both ends.  :func:`write_sources` renders it into a
folder Vitis HLS takes as is (one .cpp per node, the top, its header, the
testbench and the kernel library); :func:`csim` compiles that folder with g++
against ap_types and runs the testbench on images.

FIFO depths: a node with several inputs consumes them in lock step, while some
branches (circular shifts, pooling, windows) emit nothing before they have a
whole map.  An input of a multi-input node therefore gets room for a whole
image of its stream; every other channel gets 2.  The RTL simulation of the
cycle-accurate backend measures the real occupancy.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import csim
from .graph import Graph

TOP = "bhvit_top"
IN_AXIS_BITS = 64          # 8 pixels per beat: the DMA's 64-bit HP port moves one per cycle
DEFAULT_DEPTH = 2


class DesignError(ValueError):
    """A graph the top cannot be generated for (the message says which tensor and why)."""


@dataclass
class Channel:
    var: str
    label: str
    bits: int              # word width
    depth: int
    words_per_image: int
    copies: int = 0        # > 0: an array of this many streams (a fan-out)


@dataclass
class Process:
    call: str
    comment: str


@dataclass
class TopDesign:
    model: str
    nodes: list                      # NodeCode, graph order
    ops: list                        # op type of each node
    channels: list = field(default_factory=list)
    processes: list = field(default_factory=list)
    in_shape: tuple = ()             # one image (H, W, C)
    in_bits: int = 8
    out_values: int = 0
    out_bits: int = 0
    out_signed: bool = True

    @property
    def out_axis_bits(self) -> int:
        return 32 if self.out_bits <= 32 else 64

    @property
    def in_values(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def fifo_bits(self) -> int:
        return sum(c.bits * c.depth * max(c.copies, 1) for c in self.channels)

    def context(self) -> dict:
        per_beat = IN_AXIS_BITS // self.in_bits
        return dict(model=self.model, top=TOP, nodes=self.nodes, channels=self.channels, processes=self.processes,
                    in_values=self.in_values, in_bits=self.in_bits, in_axis_bits=IN_AXIS_BITS, in_per_beat=per_beat,
                    in_beats=-(-self.in_values // per_beat), out_values=self.out_values, out_bits=self.out_bits,
                    out_signed=self.out_signed, out_axis_bits=self.out_axis_bits)


def _rows(shape) -> int:
    """Rows per image of a stream of this per-image shape (the last axis is a row)."""
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def _var(name: str) -> str:
    return "s_" + "".join(ch if ch.isalnum() else "_" for ch in name)


def design(graph: Graph, image_shape, model: str = "model") -> TopDesign:
    """The dataflow top of a folded graph (PE / SIMD read from its nodes)."""
    from qonnx.core.datatype import DataType

    from .onnx_graph import stream_shapes
    shapes = stream_shapes(graph, 1, image_shape)
    # per image: (rows, width) of the pixel stream; token streams keep their leading axes (1 or windows)
    per_image = dict(shapes)
    per_image[graph.input] = (int(np.prod(image_shape[:-1])), int(image_shape[-1]))
    codes = [csim.node_code(graph, n, per_image[n.outputs[0]][-1], _rows(per_image[n.inputs[0]])) for n in graph.nodes]
    d = TopDesign(model, codes, [n.op for n in graph.nodes], in_shape=tuple(image_shape))
    consumers: dict = {}
    for n, code in zip(graph.nodes, codes):
        for i, t in enumerate(n.inputs):
            consumers.setdefault(t, []).append((n, code, i))
    producer = {n.outputs[0]: code for n, code in zip(graph.nodes, codes)}
    dt_in = DataType[graph.dtype_of(graph.input)]
    if dt_in.signed():
        raise DesignError(f"the graph input {graph.input} is {dt_in.name}: the AXI-Stream input takes unsigned pixels")
    d.in_bits = dt_in.bitwidth()
    if IN_AXIS_BITS % d.in_bits:
        raise DesignError(f"{d.in_bits}-bit inputs do not tile a {IN_AXIS_BITS}-bit beat")

    def add_channel(label, fmt, rows, depth=DEFAULT_DEPTH, copies=0):
        ch = Channel(_var(label) + (f"_x{copies}" if copies else ""), label, fmt["elems"] * fmt["bits"], depth,
                     rows * fmt["folds"], copies)
        d.channels.append(ch)
        return ch

    # the input adapter writes the format its first reader wants
    first = consumers.get(graph.input)
    if not first:
        raise DesignError(f"no node reads the graph input {graph.input}")
    in_fmt = first[0][1].inputs[first[0][2]]
    ch = add_channel(graph.input, in_fmt, _rows(per_image[graph.input]))
    d.processes.append(Process(f"bhvit::axis_to_stream<{IN_AXIS_BITS}, {d.in_bits}, {in_fmt['elems']}, {d.in_values}>"
                               f"(in_stream, {ch.var}, images)", "AXI-Stream -> pixels"))
    sources = {graph.input: (ch.var, in_fmt)}
    for n, code in zip(graph.nodes, codes):
        sources[n.outputs[0]] = None          # filled when the node is emitted
    args_of: dict = {}

    def wire(tensor):
        """Streams for every reader of ``tensor``: fan-out and re-folding as needed."""
        var, fmt = sources[tensor]
        readers = consumers.get(tensor, [])
        rows = _rows(per_image[tensor])
        multi = [len(r[0].inputs) > 1 for r in readers]
        if len(readers) > 1:
            depth = max(rows * fmt["folds"] + 2 if m else DEFAULT_DEPTH for m in multi)
            fan = add_channel(tensor + ".fan", fmt, rows, depth, copies=len(readers))
            d.processes.append(Process(f"bhvit::fan_out<{len(readers)}>({var}, {fan.var}, images * "
                                       f"{rows * fmt['folds']})", f"{tensor} -> {len(readers)} readers"))
            outs = [f"{fan.var}[{k}]" for k in range(len(readers))]
        else:
            outs = [var]
        for (node, ncode, idx), src, m in zip(readers, outs, multi):
            want = ncode.inputs[idx]
            if want["width"] != fmt["width"] or want["bits"] != fmt["bits"]:
                raise DesignError(f"{node.name} input {idx} ({tensor}) expects rows of {want['width']} x "
                                  f"{want['bits']}-bit values, its producer writes {fmt['width']} x {fmt['bits']}")
            if want["elems"] != fmt["elems"]:
                rf = add_channel(f"{tensor}.to.{node.name}", want, rows,
                                 rows * want["folds"] + 2 if m else DEFAULT_DEPTH)
                d.processes.append(Process(
                    f"bhvit::refold<{fmt['width']}, {fmt['bits']}, {fmt['elems']}, {want['elems']}>({src}, {rf.var}, "
                    f"images * {rows})", f"PE {fmt['elems']} -> {want['elems']} for {node.name}"))
                src = rf.var
            elif m and len(readers) == 1:
                for c in d.channels:
                    if c.var == src:
                        c.depth = max(c.depth, rows * fmt["folds"] + 2)
            args_of[(node.name, idx)] = src

    wire(graph.input)
    for n, code in zip(graph.nodes, codes):
        out = add_channel(n.outputs[0], code.out, _rows(per_image[n.outputs[0]]))
        rows_in = _rows(per_image[n.inputs[0]])
        ins = ", ".join(args_of[(n.name, i)] for i in range(len(n.inputs)))
        d.processes.append(Process(f"{code.fn}({ins}, {out.var}, images * {rows_in})", f"{n.name} ({n.op})"))
        sources[n.outputs[0]] = (out.var, code.out)
        if n.outputs[0] != graph.output:
            if not consumers.get(n.outputs[0]):
                raise DesignError(f"the output of {n.name} is read by no node")
            wire(n.outputs[0])
    var, fmt = sources[graph.output]
    d.out_values, d.out_bits, d.out_signed = fmt["width"] * _rows(per_image[graph.output]), fmt["bits"], fmt["signed"]
    if d.out_bits > 64:
        raise DesignError(f"{d.out_bits}-bit outputs do not fit a 64-bit AXI-Stream beat")
    d.processes.append(Process(f"bhvit::stream_to_axis<{d.out_axis_bits}, {d.out_bits}, "
                               f"{'true' if d.out_signed else 'false'}, {fmt['elems']}, {d.out_values}>"
                               f"({var}, out_stream, images)", "logits -> AXI-Stream"))
    return d


def library_files() -> list:
    """The kernel library headers a generated project needs (every .hpp of templates/hls)."""
    return sorted(p.name for p in csim.TEMPLATES.glob("*.hpp"))


def write_sources(d: TopDesign, folder: Path) -> dict:
    """Render the design into ``folder``: src/ (kernel library, one .cpp per node,
    the top and its header) and tb/ (testbench).  Returns {'sources', 'tb', 'include'}."""
    env = csim._env()
    src, tb = Path(folder) / "src", Path(folder) / "tb"
    for p in (src, tb):
        if p.exists():
            shutil.rmtree(p)
        p.mkdir(parents=True)
    for name in library_files():
        shutil.copyfile(csim.TEMPLATES / name, src / name)
    ctx = d.context()
    sources = []
    for code, op in zip(d.nodes, d.ops):
        f = src / f"{code.fn}.cpp"
        f.write_text(env.get_template("node.cpp.j2").render(n=code, op=op))
        sources.append(f)
    (src / f"{TOP}.hpp").write_text(env.get_template("top.hpp.j2").render(**ctx))
    top_cpp = src / f"{TOP}.cpp"
    top_cpp.write_text(env.get_template("top.cpp.j2").render(**ctx))
    sources.append(top_cpp)
    tb_cpp = tb / f"{TOP}_tb.cpp"
    tb_cpp.write_text(env.get_template("top_tb.cpp.j2").render(**ctx))
    return dict(sources=sources, tb=[tb_cpp], include=src)


def _object(cpp: Path, inc: Path, include: Path, header_key: str) -> Path:
    """g++ -c one project file, cached under build/csim by the hash of its text,
    the project's headers and the flags (the node files of an unchanged node are
    reused across runs and projects)."""
    text = cpp.read_text()
    key = hashlib.sha256("\n".join([text, header_key, str(inc), " ".join(csim.CXXFLAGS)]).encode()).hexdigest()[:16]
    obj = csim.CACHE / f"top-{cpp.stem[:50]}-{key}.o"
    if obj.exists():
        return obj
    tmp = obj.with_suffix(".part")
    res = subprocess.run(["g++", *csim.CXXFLAGS, "-isystem", str(inc), "-I", str(include), "-c", str(cpp),
                          "-o", str(tmp)], capture_output=True, text=True)
    if res.returncode != 0:
        raise csim.CsimError(f"g++ failed for {cpp}:\n{res.stderr[-4000:]}")
    tmp.replace(obj)
    return obj


def build(files: dict, jobs: int | None = None, progress: bool = True) -> Path:
    """Compile a written project (in parallel, cached) and link its testbench."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm
    inc = csim.ap_types_dir()
    csim.CACHE.mkdir(parents=True, exist_ok=True)
    include = Path(files["include"])
    header_key = hashlib.sha256("".join(p.read_text() for p in sorted(include.glob("*.hpp"))).encode()).hexdigest()
    units = list(files["sources"]) + list(files["tb"])
    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        objs = list(tqdm(pool.map(lambda f: _object(Path(f), inc, include, header_key), units), total=len(units),
                         desc="g++ (C simulation)", unit="file", disable=not progress))
    exe = Path(files["include"]).parent / "csim" / f"{TOP}_tb"
    exe.parent.mkdir(exist_ok=True)
    tmp = exe.with_suffix(".part")
    res = subprocess.run(["g++", *map(str, objs), "-o", str(tmp)], capture_output=True, text=True)
    if res.returncode != 0:
        raise csim.CsimError(f"linking the testbench failed:\n{res.stderr[-4000:]}")
    tmp.replace(exe)
    return exe


def run_testbench(exe: Path, images_nhwc: np.ndarray, expected: np.ndarray, workdir: Path) -> dict:
    """Run the top's testbench: {'logits': (N, classes), 'mismatched_images': int, 'stdout'}."""
    workdir.mkdir(parents=True, exist_ok=True)
    fi, fe, fo = workdir / "images.npy", workdir / "expected.npy", workdir / "logits.npy"
    np.save(fi, np.ascontiguousarray(images_nhwc, dtype=np.int64))
    np.save(fe, np.ascontiguousarray(expected, dtype=np.int64))
    res = subprocess.run([str(exe), str(fi), str(fe), str(fo)], capture_output=True, text=True)
    if res.returncode not in (0, 1) or not fo.exists():
        raise csim.CsimError(f"the testbench failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
    logits = np.load(fo)
    bad = int((logits != expected).any(axis=1).sum())
    return dict(logits=logits, mismatched_images=bad, stdout=res.stdout.strip(), returncode=res.returncode)
