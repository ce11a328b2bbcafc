"""The cost model of a dataflow graph: cycles per image, memory bits, LUT / DSP / BRAM per node.

Every kernel streams one image at a time.  Its folding says how much of it works in parallel:
``PE`` output channels (or attention pairs) per cycle and, for the matrix kernels, ``SIMD``
input terms per cycle.  Each op estimates itself (:meth:`hw.ops.HwOp.cost`, from the shapes;
FINN's rule for its MVAU: vectors x MW/SIMD x MH/PE); the slowest node bounds the throughput of
the whole pipeline.  The resource primitives and their calibration against Yosys are in
:mod:`hw.resources`; ``make sim`` compares both with the RTL's measured cycles and Yosys' counts.
"""
from __future__ import annotations

from .execute import stream_shapes
from .graph import Graph
from .ops import FoldingError, io_of, op_of  # noqa: F401  (FoldingError: raised by check_folding)


def divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_folding(graph: Graph, shapes) -> None:
    """Raise FoldingError naming every node whose PE / SIMD does not divide its size."""
    bad = [msg for n in graph.nodes for msg in op_of(n).check_folding(io_of(graph, n, shapes))]
    if bad:
        raise FoldingError("folding cannot be applied:\n  " + "\n  ".join(bad))


def node_cost(graph: Graph, node, shapes) -> dict:
    """Cycles per image and resources of one node (its op's estimate)."""
    return op_of(node).cost(io_of(graph, node, shapes))


def graph_cost(graph: Graph, image_shape, clock_mhz: float = 100.0) -> dict:
    """Per-node cost rows plus the pipeline's totals and its bottleneck."""
    shapes = stream_shapes(graph, 1, image_shape)
    check_folding(graph, shapes)
    rows = []
    ops = [op_of(n) for n in graph.nodes]
    ios = [io_of(graph, n, shapes) for n in graph.nodes]
    costs = [op.cost(io) for op, io in zip(ops, ios)]
    own = {n.name: c["cycles"] for n, c in zip(graph.nodes, costs)}
    for n, op, io, c in zip(graph.nodes, ops, ios, costs):
        if "emit" in c:             # only a one-bank buffer's period depends on its neighbours
            c["cycles"] = node_period(c, *neighbour_cycles(graph, n, own))
        work = op.binary_work(io)
        rows.append(dict(name=n.name, op=n.op, domain=op.domain, out_dtype=n.dtype, out_bits=io.out.bits,
                         in_bits=[p.bits for p in io.ins], weight_bits=op.weight_bits,
                         in_shape=[list(p.shape) for p in io.ins], out_shape=list(io.out.shape),
                         PE=op.pe, SIMD=int(n.attrs["SIMD"]) if "SIMD" in n.attrs else None,
                         binary_macs=work["macs"], lanes=work["lanes"], **c))
    worst = max(rows, key=lambda r: r["cycles"])
    total = {k: sum(r[k] for r in rows) for k in ("mem_bits", "bram36", "luts", "dsps")}
    return dict(nodes=rows, bottleneck=worst["name"], cycles_per_image=worst["cycles"],
                latency_cycles=sum(r["cycles"] for r in rows),
                images_per_s=clock_mhz * 1e6 / worst["cycles"], clock_mhz=clock_mhz,
                lanes=lane_use(rows, worst["cycles"]), **total)


def lane_use(rows: list, cycles_per_image: float) -> dict:
    """The XNOR lanes' work (ops' binary_work): binary MACs per image, lanes instantiated, and how
    busy they are at a period of ``cycles_per_image``: macs / (lanes x cycles); per node as well."""
    macs, lanes = sum(r["binary_macs"] for r in rows), sum(r["lanes"] for r in rows)
    return dict(binary_macs=macs, lanes=lanes,
                utilisation=macs / (lanes * cycles_per_image) if lanes else 0.0,
                nodes={r["name"]: r["binary_macs"] / (r["lanes"] * cycles_per_image) for r in rows if r["lanes"]})


def by_op_kind(rows: list, keys=("luts", "dsps", "bram36")) -> dict:
    """Per op type: nodes and the sum of ``keys`` over its rows (cost rows, or Yosys' node counts
    with an "op" field), the largest LUT user first."""
    kinds: dict = {}
    for r in rows:
        k = kinds.setdefault(r["op"], dict(nodes=0, **{key: 0 for key in keys}))
        k["nodes"] += 1
        for key in keys:
            k[key] += r[key]
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1][keys[0]]))


def macs_per_s_per_lut(binary_macs: int, images_per_s: float, luts: float) -> float:
    """Binary MACs per second per LUT: FINN's figure of merit for a binary network's fabric."""
    return binary_macs * images_per_s / luts if luts else 0.0


def node_period(c: dict, producers: list, consumers: list) -> int:
    """Cycles per image of a node in the pipeline: its own (its cost ``c``), or, for a map buffer
    with one bank, a read phase at the pace of its producers and then an emit phase at the pace
    of its consumers (their cycles per image: the ``producers`` / ``consumers`` lists)."""
    if "emit" in c:
        return int(max([c["read"], *producers]) + max([c["emit"], *consumers]))
    return int(c["cycles"])


def neighbour_cycles(graph: Graph, node, cycles: dict) -> tuple:
    """(producers', consumers') cycles per image of ``node``, from {node name: cycles}."""
    by_out = {n.outputs[0]: n.name for n in graph.nodes}
    prod = [cycles[by_out[t]] for t in node.inputs if t in by_out]
    cons = [cycles[n.name] for n in graph.nodes if node.outputs[0] in n.inputs]
    return prod, cons


def fold_for_target(graph: Graph, image_shape, target_cycles: int) -> None:
    """Smallest PE (then SIMD) per node that brings it to <= target cycles per image, where
    the sizes allow (sets the attributes in place); map buffers get two banks (BANKS = 2;
    flows.common.fold_for_board trades them for block RAM where a board needs it)."""
    shapes = stream_shapes(graph, 1, image_shape)
    for n in graph.nodes:
        op = op_of(n)
        io = io_of(graph, n, shapes)
        if op.banked:
            n.attrs["BANKS"] = 2
        dims = op.fold_dims(io)
        n.attrs["PE"] = 1
        if "SIMD" in dims:
            n.attrs["SIMD"] = 1
        for key in (("SIMD", "PE") if "SIMD" in dims else ("PE",)):
            for v in divisors(dims[key]):
                n.attrs[key] = v
                if op.cost(io)["cycles"] <= target_cycles:
                    break
            if op.cost(io)["cycles"] <= target_cycles:
                break
