"""The dataflow top of a whole graph as a netlist: processes, channels and their FIFO depths.

:func:`design` turns a folded :class:`hw.graph.Graph` into a :class:`TopDesign`, the same for
both backends: every node's kernel (its op's HLS code, :meth:`hw.ops.HwOp.hls`, or its RTL
kernel, :meth:`hw.ops.HwOp.rtl`), one channel per producer -> consumer edge, a ``fanout``
process where a tensor has several readers (a stream has exactly one), a ``refold`` process
where the producer and the consumer pack a row differently (different PE, or a wider value),
and the AXI-Stream adapters at both ends.  :mod:`hw.hls_top` renders it as the HLS top,
:mod:`hw.rtl_top` as the stitched SystemVerilog top.

FIFO depths (:class:`FifoDepths`): a node with several inputs consumes them in lock step, while
some branches (circular shifts, pooling, windows, convolutions) emit nothing before they have a
whole map, and the matrix units and LayerNorm nothing before they have a whole row (each op's
:meth:`hw.ops.HwOp.delay`).  Every tensor gets a delay in images and in rows (the number of such
buffering nodes on its longest path from the input); an input of a multi-input node gets room
for (the latest input's delay - its own) images and rows of its stream, plus a row of slack where
it waits or a kernel on either side works in bursts (none for a join of streams), every other
channel 2.  A kernel that loads a window and then works without reading (QD attention) asks room
for the window on its inputs (:meth:`hw.ops.HwOp.input_room`).  ``make sim`` measures the real
occupancy and sizes them again (flows/sim.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .execute import stream_shapes
from .ops import io_of, op_of

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
    # the words the delay model's skew asks of a join's input, without the row of slack its depth
    # adds (None: the depth): what `make sim` expects its FIFO sizing to leave (flows.common.estimate)
    skew_depth: int | None = None

    @property
    def expected_depth(self) -> int:
        return self.depth if self.skew_depth is None else min(self.depth, self.skew_depth)


@dataclass
class Process:
    kind: str                    # node | fanout | refold | axis_in | axis_out
    comment: str
    ins: list = field(default_factory=list)      # channel vars read
    outs: list = field(default_factory=list)     # channel vars written
    # node: code (the kernel), rows_in; fanout: bits, words (per image), tensor; refold: c, ib, ob,
    # signed, in_pe, out_pe, rows (per image); axis_in / axis_out: elems (values per word)
    params: dict = field(default_factory=dict)


@dataclass
class TopDesign:
    model: str
    nodes: list                      # the kernels (hw.hls.NodeCode or hw.rtl.RtlKernel), graph order
    channels: list = field(default_factory=list)
    processes: list = field(default_factory=list)
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


def rows_of(shape) -> int:
    """Rows per image of a stream of this per-image shape (the last axis is a row)."""
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def var_name(name: str) -> str:
    return "s_" + "".join(ch if ch.isalnum() else "_" for ch in name)


class FifoDepths:
    """The delay model of the FIFO depths (see the module's doc)."""

    def __init__(self, graph):
        self.ops = {n.name: op_of(n) for n in graph.nodes}
        self.producer = {n.outputs[0]: self.ops[n.name] for n in graph.nodes}
        # delay of every tensor in images and in rows: a node that buffers a whole map (or window)
        # before its first output adds an image; one that needs a whole row (token) first adds a row
        self.delay = {graph.input: (0, 0)}
        for n in graph.nodes:
            img = max(self.delay[t][0] for t in n.inputs)
            row = max(self.delay[t][1] for t in n.inputs)
            self.delay[n.outputs[0]] = tuple(map(sum, zip((img, row), self.ops[n.name].delay())))

    def skew_images(self, node, idx, tensor) -> int:
        """Whole images input ``idx`` of ``node`` must wait for its latest input."""
        if len(node.inputs) == 1:
            return 0
        delays = [self.delay[t][0] for t in node.inputs]
        if self.ops[node.name].reads_inputs_in_order:
            delays[0] += 1     # all of input 0 is read before the others are wanted: it is an image later
        return max(delays) - delays[idx]

    def bursty(self, tensor) -> bool:
        """Written by a kernel that gathers a row or an image before it emits it in one go."""
        op = self.producer.get(tensor)
        return bool(op and op.delay() != (0, 0))

    def room(self, node, idx, tensor, ch, rows, held=0) -> tuple:
        """(depth, the words of it the skew asks without the slack) of an input of a multi-input
        node: room so that its other inputs, up to ``skew`` images and rows later, never stall
        the branch feeding this one (plus a row of slack for the fan-outs and gearboxes on the
        way, where needed); ``held`` images of it wait in a shared delay channel before the
        fan-out already."""
        if len(node.inputs) == 1:
            return DEFAULT_DEPTH, DEFAULT_DEPTH
        skew_img = max(0, self.skew_images(node, idx, tensor) - held)
        skew_row = max(0, max(self.delay[t][1] for t in node.inputs) - self.delay[tensor][1])
        per_row = ch.words_per_image // rows
        # slack: a row where this input waits for the others or a kernel on either side works in
        # bursts (the buffering kernel's own pipeline and the joins on its way add a little more
        # than the skew; measured in the RTL simulation of the shipped model: one row was a few
        # words short, and the stage-3 MLP's join slowed the whole top by 9 % without it); none
        # where every input streams and none waits (at a 5,000-cycle folding such FIFOs held at
        # most 4 words of their row)
        slack = 1 if skew_img or skew_row or held or any(self.bursty(t) for t in node.inputs) else 0
        skew = skew_img * ch.words_per_image + skew_row * per_row + DEFAULT_DEPTH
        return skew + slack * per_row, skew


class Builder:
    """Builds a TopDesign: channels, fan-outs and refolds around the nodes' kernels."""

    def __init__(self, graph, image_shape, model: str, backend: str):
        from qonnx.core.datatype import DataType
        self.graph = graph
        shapes = stream_shapes(graph, 1, image_shape)
        # per image: (rows, width) of the pixel stream; token streams keep their leading axes (1 or windows)
        self.per_image = dict(shapes)
        self.per_image[graph.input] = (int(np.prod(image_shape[:-1])), int(image_shape[-1]))
        ios = [io_of(graph, n, shapes) for n in graph.nodes]
        self.ios = {n.name: io for n, io in zip(graph.nodes, ios)}
        codes = [getattr(op_of(n), backend)(io) for n, io in zip(graph.nodes, ios)]
        self.d = TopDesign(model, codes, in_shape=tuple(image_shape))
        self.consumers: dict = {}
        for n, code in zip(graph.nodes, codes):
            for i, t in enumerate(n.inputs):
                self.consumers.setdefault(t, []).append((n, code, i))
        dt_in = DataType[graph.dtype_of(graph.input)]
        if dt_in.signed():
            raise DesignError(f"the graph input {graph.input} is {dt_in.name}: the AXI-Stream input takes unsigned "
                              "pixels")
        self.d.in_bits = dt_in.bitwidth()
        if IN_AXIS_BITS % self.d.in_bits:
            raise DesignError(f"{self.d.in_bits}-bit inputs do not tile a {IN_AXIS_BITS}-bit beat")
        self.fifos = FifoDepths(graph)
        self.used: set = set()
        self.sources: dict = {}
        self.args_of: dict = {}

    def rows(self, tensor) -> int:
        return rows_of(self.per_image[tensor])

    def channel(self, label, fmt, rows, depth=DEFAULT_DEPTH) -> Channel:
        var = var_name(label)          # "a.b_c" and "a_b.c" meet here: number the later one
        while var in self.used:
            var += "_"
        self.used.add(var)
        ch = Channel(var, label, fmt["elems"] * fmt["bits"], depth, rows * fmt["folds"])
        self.d.channels.append(ch)
        return ch

    def fan_out(self, src_ch, labels, fmt, rows, tensor) -> list:
        """A copy of ``src_ch`` for each label (a stream has one reader)."""
        outs = [self.channel(label, fmt, rows) for label in labels]
        self.d.processes.append(Process("fanout", f"{tensor} -> {len(outs)} readers", [src_ch.var],
                                        [c.var for c in outs],
                                        dict(bits=src_ch.bits, words=rows * fmt["folds"], tensor=tensor)))
        return outs

    def reader_channels(self, tensor, src_ch, fmt, readers, rows) -> tuple:
        """One channel per reader of ``tensor`` (fan-outs as needed), and the images each late
        reader's copy already waited in a shared delay channel.  Where several readers each wait
        an image or more for their other inputs (norm1 -> the three convolution joins of a
        block), the images they all wait are held once, in a delay channel between two
        fan-outs, rather than in every reader's own FIFO."""
        if len(readers) <= 1:
            return [src_ch], {}
        late = [k for k, (node, _, idx) in enumerate(readers) if self.fifos.skew_images(node, idx, tensor) >= 1]
        if len(late) < 2:
            return self.fan_out(src_ch, [f"{tensor}.{k}" for k in range(len(readers))], fmt, rows, tensor), {}
        common = min(self.fifos.skew_images(readers[k][0], readers[k][2], tensor) for k in late)
        early = [k for k in range(len(readers)) if k not in late]
        first = self.fan_out(src_ch, [f"{tensor}.{k}" for k in early] + [f"{tensor}.delay"], fmt, rows, tensor)
        first[-1].depth = common * first[-1].words_per_image + DEFAULT_DEPTH
        second = self.fan_out(first[-1], [f"{tensor}.{k}" for k in late], fmt, rows, tensor)
        by_reader = dict(zip(early, first[:-1])) | dict(zip(late, second))
        return [by_reader[k] for k in range(len(readers))], {k: common for k in late}

    def wire(self, tensor) -> None:
        """Streams for every reader of ``tensor``: fan-out and re-folding as needed; the channel a
        reader reads gets the depth that reader needs."""
        src_ch, fmt = self.sources[tensor]
        readers = self.consumers.get(tensor, [])
        rows = self.rows(tensor)
        outs, held = self.reader_channels(tensor, src_ch, fmt, readers, rows)
        for k, ((node, ncode, idx), ch) in enumerate(zip(readers, outs)):
            want = ncode.inputs[idx]
            widen = want["bits"] > fmt["bits"] and not (fmt["bipolar"] or want["bipolar"])
            if want["width"] != fmt["width"] or (want["bits"] != fmt["bits"] and not widen) \
                    or (fmt["signed"] and not want["signed"]):
                raise DesignError(f"{node.name} input {idx} ({tensor}) expects rows of {want['width']} x "
                                  f"{want['bits']}-bit values, its producer writes {fmt['width']} x {fmt['bits']}")
            if want["elems"] != fmt["elems"] or widen:
                rf = self.channel(f"{tensor}.to.{node.name}", want, rows)
                why = f"PE {fmt['elems']} -> {want['elems']}" + (f", {fmt['bits']} -> {want['bits']} bits" if widen else "")
                self.d.processes.append(Process(
                    "refold", f"{why} for {node.name}", [ch.var], [rf.var],
                    dict(c=fmt["width"], ib=fmt["bits"], ob=want["bits"], signed=bool(fmt["signed"]),
                         in_pe=fmt["elems"], out_pe=want["elems"], rows=rows)))
                ch = rf
            depth, skew = self.fifos.room(node, idx, tensor, ch, rows, held.get(k, 0))
            if depth > ch.depth:
                ch.depth, ch.skew_depth = depth, skew
            room = op_of(node).input_room(self.ios[node.name], idx)
            if room:
                need = room * (ch.words_per_image // rows) + DEFAULT_DEPTH
                ch.depth = max(ch.depth, need)
                if ch.skew_depth is not None:
                    ch.skew_depth = max(ch.skew_depth, need)
            self.args_of[(node.name, idx)] = ch.var

    def build(self) -> TopDesign:
        graph, d = self.graph, self.d
        # the input adapter writes the format its first reader wants
        first = self.consumers.get(graph.input)
        if not first:
            raise DesignError(f"no node reads the graph input {graph.input}")
        in_fmt = first[0][1].inputs[first[0][2]]
        ch = self.channel(graph.input, in_fmt, self.rows(graph.input))
        d.processes.append(Process("axis_in", "AXI-Stream -> pixels", [], [ch.var], dict(elems=in_fmt["elems"])))
        self.sources[graph.input] = (ch, in_fmt)
        self.wire(graph.input)
        for n, code in zip(graph.nodes, d.nodes):
            rows_out = self.rows(n.outputs[0])
            out = self.channel(n.outputs[0], code.out, rows_out)
            if op_of(n).burst_output:           # its output FIFO holds a token's words
                out.depth = out.words_per_image // rows_out + DEFAULT_DEPTH
            ins = [self.args_of[(n.name, i)] for i in range(len(n.inputs))]
            d.processes.append(Process("node", f"{n.name} ({n.op})", ins, [out.var],
                                       dict(code=code, rows_in=self.rows(n.inputs[0]))))
            self.sources[n.outputs[0]] = (out, code.out)
            if n.outputs[0] != graph.output:
                if not self.consumers.get(n.outputs[0]):
                    raise DesignError(f"the output of {n.name} is read by no node")
                self.wire(n.outputs[0])
        out_ch, fmt = self.sources[graph.output]
        d.out_values, d.out_bits, d.out_signed = fmt["width"] * self.rows(graph.output), fmt["bits"], fmt["signed"]
        if d.out_bits > 64:
            raise DesignError(f"{d.out_bits}-bit outputs do not fit a 64-bit AXI-Stream beat")
        d.processes.append(Process("axis_out", "logits -> AXI-Stream", [out_ch.var], [], dict(elems=fmt["elems"])))
        d.in_fmt, d.out_fmt = in_fmt, fmt
        return d


def design(graph, image_shape, model: str = "model", backend: str = "hls") -> TopDesign:
    """The dataflow top of a folded graph (PE / SIMD read from its nodes) with every node's
    ``backend`` kernel ("hls": :class:`hw.hls.NodeCode`; "rtl": :class:`hw.rtl.RtlKernel`)."""
    return Builder(graph, image_shape, model, backend).build()
