"""The base class of every dataflow-graph op, and the registry that finds an op's class by its type.

An op is one kind of kernel node of :mod:`hw.graph` (FINN's ``custom_op/fpgadataflow`` classes,
qonnx's ``CustomOp``).  Its class holds everything about it: its attributes, its golden
execution (calling :mod:`hw.kernels`), its hardware-exact PyTorch form (:mod:`hw.qat`) and its
Brevitas form (:mod:`hw.qonnx_export`), its place in ONNX (:mod:`hw.onnx_graph`,
:mod:`hw.custom_op`), what PE / SIMD fold, its cycles and resources (:mod:`hw.cost`), the
arguments of its HLS C++ and SystemVerilog templates (:mod:`hw.hls`, :mod:`hw.rtl`), and the
traits the dataflow top needs (:mod:`hw.dataflow`).  Passes, the cost model, both backends and
the flows ask ``op_of(node)``; none of them compares ``node.op`` with a name.

Adding an op: docs/adding-an-op.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..graph import DOMAIN

REGISTRY: dict = {}


class UnsupportedOpError(NotImplementedError):
    """A node whose op type no registered op implements."""


class FoldingError(ValueError):
    """A PE / SIMD value that does not divide the size it folds."""


def register(cls):
    """Class decorator: make ``cls`` the op of its ``op_type``."""
    if not cls.op_type:
        raise ValueError(f"{cls.__name__} has no op_type")
    if cls.op_type in REGISTRY and REGISTRY[cls.op_type] is not cls:
        raise ValueError(f"op type {cls.op_type} registered twice ({REGISTRY[cls.op_type].__name__}, {cls.__name__})")
    REGISTRY[cls.op_type] = cls
    return cls


def op_class(op_type: str):
    try:
        return REGISTRY[op_type]
    except KeyError:
        raise UnsupportedOpError(f"no hardware op '{op_type}'; known: {', '.join(sorted(REGISTRY))}") from None


def op_of(node) -> "HwOp":
    """The op of a graph node (anything with op, name, attrs, params)."""
    return op_class(node.op)(node)


def check_fold(node: str, what: str, size: int, value: int) -> None:
    if value < 1 or size % value:
        legal = [d for d in range(1, size + 1) if size % d == 0]
        raise FoldingError(f"{node}: {what}={value} does not divide {size}; legal values: {legal}")


def prod(s) -> int:
    return int(np.prod(s)) if len(s) else 1


@dataclass(frozen=True)
class Port:
    """A stream of one image as a node sees it: its qonnx DataType and its shape (channel-last;
    a token stream leads with 1, an attention stream with its windows)."""
    dtype: str
    shape: tuple

    @property
    def datatype(self):
        from qonnx.core.datatype import DataType
        return DataType[self.dtype]

    @property
    def bits(self) -> int:
        return self.datatype.bitwidth()

    @property
    def signed(self) -> bool:
        return bool(self.datatype.signed())

    @property
    def width(self) -> int:
        """Values per row (the last axis)."""
        return int(self.shape[-1])

    @property
    def rows(self) -> int:
        """Rows per image (every axis but the last)."""
        return prod(self.shape[:-1]) if len(self.shape) > 1 else 1

    @property
    def elems(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class IO:
    """A node's streams: its inputs and its output (:func:`io_of`)."""
    ins: tuple
    out: Port


def io_of(graph, node, shapes) -> IO:
    """The ports of ``node`` in ``graph``; ``shapes``: hw.execute.stream_shapes(graph, 1, image_shape)."""
    return IO(tuple(Port(graph.dtype_of(t), tuple(shapes[t])) for t in node.inputs),
              Port(node.dtype, tuple(shapes[node.outputs[0]])))


class HwOp:
    """One node of the dataflow graph as an op (``op_of(node)``); subclasses implement the hooks.

    Hooks every op implements (tests/test_ops_registry.py checks): :meth:`execute`,
    :meth:`torch_forward`, :meth:`cost`, :meth:`hls`, :meth:`rtl`.  The others have defaults."""

    op_type: ClassVar[str] = ""
    domain: ClassVar[str] = DOMAIN
    # ONNX attributes of the op (name -> "i" | "ints" | "s") besides PE, out_dtype, param_names
    attr_types: ClassVar[dict] = {}
    # attributes a node may leave out (qonnx then reads 0 / ""): variants added after the op's
    # first form, so that the graphs and ONNX files of that form stay as they were
    optional_attrs: ClassVar[tuple] = ()

    # ---- traits
    weight_bits: ClassVar[int | None] = None   # bits per weight of its weight ROM (None: no weights)
    banked: ClassVar[bool] = False             # buffers a map in BANKS = 1 or 2 image banks (RTL)
    ready_registered: ClassVar[bool] = False   # its input ready is a register's, never its output ready's
    burst_output: ClassVar[bool] = False       # emits a token's words back to back after gathering its taps
    reads_inputs_in_order: ClassVar[bool] = False   # reads all of input 0 before the other inputs
    table_placement: ClassVar[bool] = False    # its tables go to block RAM or LUTs (TABLE_BRAM attribute)
    binary_weights: ClassVar[str | None] = None   # the parameter that must hold +-1 (validate)
    # A graph pass that introduces this op or streamlines its nodes, ``lower(graph) -> graph`` (a
    # classmethod; None where the graph builder's nodes stay as they are): hw.passes.lower runs
    # every op's pass in ``lowering_order``.
    lower: ClassVar = None
    lowering_order: ClassVar[int] = 0

    def __init__(self, node):
        self.node = node

    def __repr__(self):
        return f"{type(self).__name__}({self.node.name})"

    @classmethod
    def source_file(cls) -> str:
        """The op's module as a path (``hw/ops/<op>.py``), for the comments of generated sources."""
        return cls.__module__.replace(".", "/") + ".py"

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def attrs(self) -> dict:
        return self.node.attrs

    @property
    def params(self) -> dict:
        return self.node.params

    @property
    def pe(self) -> int:
        return int(self.attrs.get("PE", 1))

    @property
    def simd(self) -> int:
        return int(self.attrs.get("SIMD", 1))

    @property
    def banks(self) -> int:
        """BANKS of a map buffer (2 where unset); 1 for every other op."""
        return int(self.attrs.get("BANKS", 2)) if self.banked else 1

    # ------------------------------------------------------------------ golden model
    def execute(self, *xs) -> list:
        """The output streams (int64) of the input streams (int64, channel-last)."""
        raise NotImplementedError(f"{self.op_type}: no golden execution")

    # ------------------------------------------------------------------ PyTorch forms
    def torch_forward(self, net, *xs):
        """The hardware-exact PyTorch form (float64 tensors holding the golden integers); ``net``
        is the :class:`hw.qat.TorchIntNet`, ``net.p(node, key)`` a parameter of this node."""
        raise NotImplementedError(f"{self.op_type}: no PyTorch form")

    def qat_role(self, key: str) -> str:
        """How QAT treats parameter ``key``: "table" (fixed), "binary" (latent float behind a
        sign), "threshold" (scaled by its input's format), "int8" (an 8-bit weight), "value"."""
        return "value"

    def intnet_params(self, vals: dict) -> dict:
        """The entries of hw.intnet.IntNet's parameters of this node from the graph parameters
        ``vals`` (after QAT): {key: array}."""
        return {}

    def qonnx_modules(self, net) -> dict:
        """Brevitas modules of the QONNX form of this node in ``net`` (hw.qonnx_export.QonnxIntNet,
        whose ``net.c(node, key)`` are its constants): {"quant" | "layer": module}."""
        return {}

    def qonnx_forward(self, net, *xs):
        """The form Brevitas exports to QONNX (hw.qonnx_export.QonnxIntNet ``net``); by default
        the hardware-exact PyTorch form."""
        return self.torch_forward(net, *xs)

    # ------------------------------------------------------------------ ONNX
    def param_datatype(self, key: str) -> str | None:
        """The qonnx DataType annotation of a parameter initializer (None: none)."""
        return None

    # ------------------------------------------------------------------ folding and cost
    def fold_dims(self, io: IO) -> dict:
        """The sizes PE (and SIMD) fold: {'PE': n, 'SIMD': m (optional)}.  Default: PE output
        channels per word."""
        return {"PE": io.out.width}

    def check_folding(self, io: IO) -> list:
        """Problems of this node's folding (empty: none)."""
        bad = []
        for key, size in self.fold_dims(io).items():
            v = int(self.attrs.get(key, 1))
            if v < 1 or size % v:
                bad.append(f"{self.name} ({self.op_type}): {key}={v} does not divide {size}; legal: "
                           f"{', '.join(str(d) for d in range(1, size + 1) if size % d == 0)}")
        if "BANKS" in self.attrs and (not self.banked or int(self.attrs["BANKS"]) not in (1, 2)):
            bad.append(f"{self.name} ({self.op_type}): BANKS={self.attrs['BANKS']}; only map buffers take BANKS, "
                       "1 or 2")
        return bad

    def cost(self, io: IO) -> dict:
        """Cycles per image and resources: {cycles, mem_bits, bram36, luts, dsps} (a one-bank map
        buffer also {read, emit}: hw.cost.node_period adds them at its neighbours' pace)."""
        raise NotImplementedError(f"{self.op_type}: no cost model")

    def binary_work(self, io: IO) -> dict:
        """The XNOR-popcount work of one image: {'macs': binary multiply-accumulates per image,
        'lanes': XNOR lanes instantiated (one per binary product done in one cycle)}.  Zero for
        the fixed-point ops; the binary matrix and convolution units say theirs.  hw.cost sums
        them into the lanes' utilisation, macs / (lanes x cycles per image)."""
        return dict(macs=0, lanes=0)

    def banked_cycles(self, read: int, emit: int) -> dict:
        """Cycles per image of a map buffer that reads an image in ``read`` cycles and emits it in
        ``emit``: with two banks the phases overlap (the larger counts); with one the next image
        waits for the emission, so they add up at the pace of the neighbours (hw.cost.node_period
        takes ``read`` and ``emit``)."""
        if self.banks == 1:
            return dict(cycles=int(read + emit), read=int(read), emit=int(emit))
        return dict(cycles=int(max(read, emit)))

    def delay(self) -> tuple:
        """(images, rows) the kernel holds back before its first output (hw.dataflow's FIFO depths)."""
        return 0, 0

    def input_room(self, io, idx: int) -> int:
        """Rows of input ``idx`` its FIFO holds so that the producer goes on while the kernel works
        without reading (hw.dataflow's FIFO depths; 0: no more than the delay model asks)."""
        return 0

    def reads_in_bursts(self) -> bool:
        """Reads a row's input words back to back, so the top keeps a FIFO in front of it."""
        return False

    # ------------------------------------------------------------------ code generation
    def hls(self, io: IO):
        """The node's HLS C++ (:class:`hw.hls.NodeCode`) with its folding."""
        raise NotImplementedError(f"{self.name}: no HLS kernel for {self.op_type}")

    def rtl(self, io: IO):
        """The node's SystemVerilog kernel (:class:`hw.rtl.RtlKernel`) with its folding."""
        raise NotImplementedError(f"{self.name}: no RTL kernel for {self.op_type}")


HOOKS = ("execute", "torch_forward", "cost", "hls", "rtl")


def tokens_to_map(t, h, w):
    """(B, H*W, C) token stream -> (B, C, H, W) map."""
    b, n, c = t.shape
    if n != h * w:
        raise ValueError(f"expected {h}x{w} = {h * w} tokens, got {n}")
    return t.transpose(0, 2, 1).reshape(b, c, h, w)


def map_to_tokens(m):
    """(B, C, H, W) map -> (B, H*W, C) token stream."""
    b, c, h, w = m.shape
    return m.reshape(b, c, h * w).transpose(0, 2, 1)
