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
branches (circular shifts, pooling, windows, convolutions) emit nothing before
they have a whole map, and the matrix units and LayerNorm nothing before they
have a whole row.  Every tensor gets a delay in images and in rows (the number
of such buffering nodes on its longest path from the input); an input of a
multi-input node gets room for (the latest input's delay - its own) images and
rows of its stream, plus a row, every other channel 2.  The RTL simulation of the cycle-accurate
backend measures the real occupancy.
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
# ops that read a whole map (or attention window) before their first output
BUFFERING_OPS = ("IntConv2d", "XnorConv2d", "ShiftBranch", "ShiftConv", "TokenPool", "AttentionTokens",
                 "WindowReverse", "PooledUpsample", "QDAttention", "TokenSum")
# ops that alternate phases per output token (gather the token's taps, then emit its words at
# one per cycle): their output FIFO holds a token's words, so that the next token's taps are
# gathered while a slower reader drains this one (with 2 words, the stage-0 convolutions, 25
# cycles per token on their own, took 9 + 32 behind their PE = 1 readers, and the top ran
# 5.6 % slower than its cost model)
BURST_OPS = ("XnorConv2d", "IntConv2d")
# ops that read a whole row (token) before its first output word (the RTL channel repeat also
# emits a row late, the HLS one passes its first copy through: sized for the HLS one, the RTL
# top's FIFO after a repeat has a row more than it needs)
ROW_BUFFERING_OPS = ("MVAU", "IntLinear", "IntLayerNorm")
# multi-input ops that read all of input 0 before the others (the rest read inputs in lock step)
SEQUENTIAL_READERS = ("AttentionTokens",)


class DesignError(ValueError):
    """A graph the top cannot be generated for (the message says which tensor and why)."""


@dataclass
class Channel:
    var: str
    label: str
    bits: int              # word width
    depth: int
    words_per_image: int


@dataclass
class Process:
    call: str                    # the HLS statement (empty in an RTL design)
    comment: str
    kind: str = "node"           # node | fanout | refold | axis_in | axis_out
    ins: list = field(default_factory=list)      # channel vars read
    outs: list = field(default_factory=list)     # channel vars written
    params: dict = field(default_factory=dict)   # node: its code; refold: sizes


@dataclass
class TopDesign:
    model: str
    nodes: list                      # NodeCode, graph order
    channels: list = field(default_factory=list)
    processes: list = field(default_factory=list)
    helpers: list = field(default_factory=list)      # C++ functions of the top file (the fan-outs)
    in_shape: tuple = ()             # one image (H, W, C)
    in_bits: int = 8
    out_values: int = 0
    out_bits: int = 0
    out_signed: bool = True
    in_fmt: dict = field(default_factory=dict)       # stream() format of the first node's pixel input
    out_fmt: dict = field(default_factory=dict)      # and of the last node's output

    @property
    def out_axis_bits(self) -> int:
        return 32 if self.out_bits <= 32 else 64

    @property
    def in_values(self) -> int:
        return int(np.prod(self.in_shape))

    def context(self) -> dict:
        per_beat = IN_AXIS_BITS // self.in_bits
        return dict(model=self.model, top=TOP, nodes=self.nodes, channels=self.channels, processes=self.processes,
                    helpers=self.helpers,
                    in_values=self.in_values, in_bits=self.in_bits, in_axis_bits=IN_AXIS_BITS, in_per_beat=per_beat,
                    in_beats=-(-self.in_values // per_beat), out_values=self.out_values, out_bits=self.out_bits,
                    out_signed=self.out_signed, out_axis_bits=self.out_axis_bits)


def _delay_of(node) -> tuple:
    """(images, rows) a node holds back before its first output.  Box sums along W and k x k
    pooling buffer a band of rows (hw.cost.map_band; the RTL kernels do, the HLS ones take the
    whole map: sizing their FIFOs for the shorter delay only over-provisions the other branch)."""
    from .cost import map_band
    if node.op in ("ShiftBranch", "TokenPool") and map_band(node.op, node.attrs) < node.attrs["H"]:
        return 0, map_band(node.op, node.attrs)
    return int(node.op in BUFFERING_OPS), int(node.op in ROW_BUFFERING_OPS)


def _rows(shape) -> int:
    """Rows per image of a stream of this per-image shape (the last axis is a row)."""
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def _var(name: str) -> str:
    return "s_" + "".join(ch if ch.isalnum() else "_" for ch in name)


def design(graph: Graph, image_shape, model: str = "model", codegen=None) -> TopDesign:
    """The dataflow top of a folded graph (PE / SIMD read from its nodes).  ``codegen``
    makes a node's code (default hw.csim.node_code, the HLS backend; hw.rtlsim.node_rtl
    gives the RTL netlist): anything with the node's input and output stream formats."""
    codegen = codegen or csim.node_code
    hls = codegen is csim.node_code
    from qonnx.core.datatype import DataType

    from .onnx_graph import stream_shapes
    shapes = stream_shapes(graph, 1, image_shape)
    # per image: (rows, width) of the pixel stream; token streams keep their leading axes (1 or windows)
    per_image = dict(shapes)
    per_image[graph.input] = (int(np.prod(image_shape[:-1])), int(image_shape[-1]))
    codes = [codegen(graph, n, per_image[n.outputs[0]][-1], _rows(per_image[n.inputs[0]])) for n in graph.nodes]
    d = TopDesign(model, codes, in_shape=tuple(image_shape))
    consumers: dict = {}
    for n, code in zip(graph.nodes, codes):
        for i, t in enumerate(n.inputs):
            consumers.setdefault(t, []).append((n, code, i))
    dt_in = DataType[graph.dtype_of(graph.input)]
    if dt_in.signed():
        raise DesignError(f"the graph input {graph.input} is {dt_in.name}: the AXI-Stream input takes unsigned pixels")
    d.in_bits = dt_in.bitwidth()
    if IN_AXIS_BITS % d.in_bits:
        raise DesignError(f"{d.in_bits}-bit inputs do not tile a {IN_AXIS_BITS}-bit beat")

    used: set = set()

    def add_channel(label, fmt, rows, depth=DEFAULT_DEPTH):
        var = _var(label)          # "a.b_c" and "a_b.c" meet here: number the later one
        while var in used:
            var += "_"
        used.add(var)
        ch = Channel(var, label, fmt["elems"] * fmt["bits"], depth, rows * fmt["folds"])
        d.channels.append(ch)
        return ch

    # delay of every tensor in images and in rows: a node that buffers a whole map (or window)
    # before its first output adds an image; one that needs a whole row (token) first adds a row
    delay = {graph.input: (0, 0)}
    for n in graph.nodes:
        img = max(delay[t][0] for t in n.inputs)
        row = max(delay[t][1] for t in n.inputs)
        delay[n.outputs[0]] = tuple(map(sum, zip((img, row), _delay_of(n))))

    def skew_images(node, idx, tensor) -> int:
        """Whole images input ``idx`` of ``node`` must wait for its latest input."""
        if len(node.inputs) == 1:
            return 0
        skew = max(delay[t][0] for t in node.inputs) - delay[tensor][0]
        if node.op in SEQUENTIAL_READERS and idx > 0:
            skew += 1          # all of input 0 is read before the others: they wait an image
        return skew

    def depth_for(node, idx, tensor, ch, rows, held=0):
        """Room an input of a multi-input node needs so that its other inputs, up to ``skew``
        images and rows later, never stall the branch feeding this one (plus a row of slack
        for the fan-outs and gearboxes on the way); ``held`` images of it wait in a shared
        delay channel before the fan-out already."""
        if len(node.inputs) == 1:
            return DEFAULT_DEPTH
        skew_img = max(0, skew_images(node, idx, tensor) - held)
        skew_row = max(0, max(delay[t][1] for t in node.inputs) - delay[tensor][1])
        per_row = ch.words_per_image // rows
        # slack: a row, two where the other inputs come an image later (the buffering kernel's
        # own pipeline and the joins on its way add a little more than the image; measured in
        # the RTL simulation of the shipped model: one row was a few words short)
        slack = 1
        return skew_img * ch.words_per_image + (skew_row + slack) * per_row + DEFAULT_DEPTH

    # the input adapter writes the format its first reader wants
    first = consumers.get(graph.input)
    if not first:
        raise DesignError(f"no node reads the graph input {graph.input}")
    in_fmt = first[0][1].inputs[first[0][2]]
    ch = add_channel(graph.input, in_fmt, _rows(per_image[graph.input]))
    d.processes.append(Process(f"bhvit::axis_to_stream<{IN_AXIS_BITS}, {d.in_bits}, {in_fmt['elems']}, {d.in_values}>"
                               f"(in_stream, {ch.var}, images)", "AXI-Stream -> pixels", "axis_in", [], [ch.var]))
    sources = {graph.input: (ch, in_fmt)}
    args_of: dict = {}

    def fan_out(src_ch, labels, fmt, rows, tensor):
        """A copy of ``src_ch`` for each label (a dataflow stream has one reader)."""
        outs = [add_channel(label, fmt, rows) for label in labels]
        fn = f"fan_{src_ch.var}"
        w = src_ch.bits
        d.helpers.append(
            f"// {tensor} is read by {len(outs)} nodes: one copy each (a dataflow stream has one reader)\n"
            f"static void {fn}(hls::stream<ap_uint<{w}> > &in, "
            + ", ".join(f"hls::stream<ap_uint<{w}> > &o{k}" for k in range(len(outs)))
            + ", unsigned words) {\n    for (unsigned i = 0; i < words; i++) {\n#pragma HLS PIPELINE II=1\n"
            f"        const ap_uint<{w}> x = in.read();\n"
            + "".join(f"        o{k}.write(x);\n" for k in range(len(outs))) + "    }\n}\n")
        d.processes.append(Process(f"{fn}({src_ch.var}, {', '.join(c.var for c in outs)}, images * "
                                   f"{rows * fmt['folds']})", f"{tensor} -> {len(outs)} readers", "fanout",
                                   [src_ch.var], [c.var for c in outs], dict(bits=w)))
        return outs

    def wire(tensor):
        """Streams for every reader of ``tensor``: fan-out and re-folding as needed; the
        channel a reader reads gets the depth that reader needs.  Where several readers
        each wait an image or more for their other inputs (norm1 -> the three convolution
        joins of a block), the images they all wait are held once, in a delay channel
        between two fan-outs, rather than in every reader's own FIFO."""
        src_ch, fmt = sources[tensor]
        readers = consumers.get(tensor, [])
        rows = _rows(per_image[tensor])
        held = {}
        if len(readers) > 1:
            late = [k for k, (node, _, idx) in enumerate(readers) if skew_images(node, idx, tensor) >= 1]
            if len(late) >= 2:
                common = min(skew_images(readers[k][0], readers[k][2], tensor) for k in late)
                early = [k for k in range(len(readers)) if k not in late]
                first = fan_out(src_ch, [f"{tensor}.{k}" for k in early] + [f"{tensor}.delay"], fmt, rows, tensor)
                first[-1].depth = common * first[-1].words_per_image + DEFAULT_DEPTH
                second = fan_out(first[-1], [f"{tensor}.{k}" for k in late], fmt, rows, tensor)
                by_reader = dict(zip(early, first[:-1])) | dict(zip(late, second))
                outs = [by_reader[k] for k in range(len(readers))]
                held = {k: common for k in late}
            else:
                outs = fan_out(src_ch, [f"{tensor}.{k}" for k in range(len(readers))], fmt, rows, tensor)
        else:
            outs = [src_ch]
        for k, ((node, ncode, idx), ch) in enumerate(zip(readers, outs)):
            want = ncode.inputs[idx]
            widen = want["bits"] > fmt["bits"] and not (fmt["bipolar"] or want["bipolar"])
            if want["width"] != fmt["width"] or (want["bits"] != fmt["bits"] and not widen) \
                    or (fmt["signed"] and not want["signed"]):
                raise DesignError(f"{node.name} input {idx} ({tensor}) expects rows of {want['width']} x "
                                  f"{want['bits']}-bit values, its producer writes {fmt['width']} x {fmt['bits']}")
            if want["elems"] != fmt["elems"] or widen:
                rf = add_channel(f"{tensor}.to.{node.name}", want, rows)
                why = f"PE {fmt['elems']} -> {want['elems']}" + (f", {fmt['bits']} -> {want['bits']} bits" if widen else "")
                d.processes.append(Process(
                    f"bhvit::refold<{fmt['width']}, {fmt['bits']}, {want['bits']}, {'true' if fmt['signed'] else 'false'}, "
                    f"{fmt['elems']}, {want['elems']}>({ch.var}, {rf.var}, images * {rows})", f"{why} for {node.name}",
                    "refold", [ch.var], [rf.var], dict(c=fmt["width"], ib=fmt["bits"], ob=want["bits"],
                                                      signed=bool(fmt["signed"]), in_pe=fmt["elems"],
                                                      out_pe=want["elems"])))
                ch = rf
            ch.depth = max(ch.depth, depth_for(node, idx, tensor, ch, rows, held.get(k, 0)))
            args_of[(node.name, idx)] = ch.var

    wire(graph.input)
    for n, code in zip(graph.nodes, codes):
        rows_out = _rows(per_image[n.outputs[0]])
        out = add_channel(n.outputs[0], code.out, rows_out)
        if n.op in BURST_OPS:
            out.depth = out.words_per_image // rows_out + DEFAULT_DEPTH
        rows_in = _rows(per_image[n.inputs[0]])
        ins = [args_of[(n.name, i)] for i in range(len(n.inputs))]
        call = f"{code.fn}({', '.join(ins)}, {out.var}, images * {rows_in})" if hls else ""
        d.processes.append(Process(call, f"{n.name} ({n.op})", "node", ins, [out.var], dict(code=code)))
        sources[n.outputs[0]] = (out, code.out)
        if n.outputs[0] != graph.output:
            if not consumers.get(n.outputs[0]):
                raise DesignError(f"the output of {n.name} is read by no node")
            wire(n.outputs[0])
    out_ch, fmt = sources[graph.output]
    var = out_ch.var
    d.out_values, d.out_bits, d.out_signed = fmt["width"] * _rows(per_image[graph.output]), fmt["bits"], fmt["signed"]
    if d.out_bits > 64:
        raise DesignError(f"{d.out_bits}-bit outputs do not fit a 64-bit AXI-Stream beat")
    d.processes.append(Process(f"bhvit::stream_to_axis<{d.out_axis_bits}, {d.out_bits}, "
                               f"{'true' if d.out_signed else 'false'}, {fmt['elems']}, {d.out_values}>"
                               f"({var}, out_stream, images)", "logits -> AXI-Stream", "axis_out", [var], []))
    d.in_fmt, d.out_fmt = in_fmt, fmt
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
    for code in d.nodes:
        f = src / f"{code.fn}.cpp"
        f.write_text(csim.node_source(code))
        sources.append(f)
    (src / f"{TOP}.hpp").write_text(env.get_template("top.hpp.j2").render(**ctx))
    top_cpp = src / f"{TOP}.cpp"
    top_cpp.write_text(env.get_template("top.cpp.j2").render(**ctx))
    sources.append(top_cpp)
    tb_cpp = tb / f"{TOP}_tb.cpp"
    tb_cpp.write_text(env.get_template("top_tb.cpp.j2").render(**ctx))
    return dict(sources=sources, tb=[tb_cpp], include=src)


def build(files: dict, jobs: int | None = None, progress: bool = True) -> Path:
    """Compile a written project (in parallel; each file cached under build/csim by the
    hash of its text, so a node's object is shared with its per-node testbench and with
    earlier projects) and link its testbench."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm
    inc = csim.ap_types_dir()
    csim.CACHE.mkdir(parents=True, exist_ok=True)
    include = Path(files["include"])
    lib_key = csim.library_key()
    top_key = lib_key + hashlib.sha256((include / f"{TOP}.hpp").read_bytes()).hexdigest()
    tops = {Path(f).name for f in files["tb"]} | {f"{TOP}.cpp"}
    units = [(Path(f).read_text(), Path(f).stem[:50], Path(f).name in tops) for f in [*files["sources"], *files["tb"]]]

    def compile_one(u):
        text, tag, is_top = u
        return csim._compile(text, tag, inc, top_key if is_top else lib_key, [include] if is_top else [])

    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        objs = list(tqdm(pool.map(compile_one, units), total=len(units), desc="g++ (C simulation)", unit="file",
                         disable=not progress))
    exe = include.parent / "csim" / f"{TOP}_tb"
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
