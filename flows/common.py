"""What the board flows share (`make hls`: flows/hls.py, `make sim`: flows/sim.py): their
options, the board and the folded integer network (checkpoint, folding, the estimate against
the device), the golden test data, and the report files.

:func:`prepare` does steps 1-3 of both flows: the board (flows/boards.py); the integer network
and its dataflow graph (hw.intnet, hw.graph), folded for ``--target-cycles`` per image within
``--max-util`` of the board's LUT / BRAM / DSP, or from ``--folding``; the design (the HLS or
the RTL netlist) and its estimate (hw.cost plus the top's FIFOs), checked against the device
before any file is written.  Any bad input raises :class:`FlowInputError`, which the flows turn
into exit code 2 with its message.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DEFAULT_TARGET_CYCLES = 5000       # 20k images/s at 100 MHz; relaxed (RELAX_STEP) until the estimate fits
RELAX_STEP = 1.1                  # fold_for_board: the next target when one does not fit (10 % slower)
DEFAULT_MAX_UTIL = 0.90            # of the device's LUT / BRAM / DSP: the rest is for the DMA and interconnect


class DesignTooLargeError(ValueError):
    """The estimated design does not fit the board; the message has the numbers."""


class FlowInputError(ValueError):
    """A board, checkpoint, folding or design the flow cannot use (exit code 2); the message says why."""


def estimate(graph, image_shape, board, design=None, sized: bool = False) -> dict:
    """hw.cost's per-node estimate plus the top's FIFOs (each as its block-RAM and LUT-RAM
    parts, hw.resources.fifo_parts), against the board.  ``sized``: the FIFOs as `make sim`'s
    sizing is expected to leave them (a join's input at the words its skew asks, without the
    delay model's row of slack; hw.dataflow.Channel.expected_depth), not as built first."""
    from hw.cost import graph_cost
    from hw.resources import fifo_block_ram36, fifo_luts
    cost = graph_cost(graph, image_shape, board.clock_mhz)
    fifo_bram = fifo_lut = 0
    if design is not None:
        for c in design.channels:          # templates/rtl/fifo.sv; none for a direct link (depth 0)
            depth = c.expected_depth if sized else c.depth
            fifo_bram += fifo_block_ram36(depth, c.bits)
            fifo_lut += fifo_luts(depth, c.bits)
    used = dict(luts=cost["luts"] + fifo_lut, bram36=cost["bram36"] + fifo_bram, dsps=cost["dsps"])
    avail = dict(luts=board.luts, bram36=board.bram36, dsps=board.dsps)
    util = {k: used[k] / avail[k] if avail[k] else float("inf") for k in used}
    return dict(cost=cost, used=used, available=avail, utilisation=util, fifo_bram36=fifo_bram, fifo_luts=fifo_lut)


def resource_lines(est: dict, max_util: float) -> list:
    return [f"{k.upper():6s} {est['used'][k]:>8,} of {est['available'][k]:>8,} ({100 * est['utilisation'][k]:5.1f} %, "
            f"limit {100 * max_util:.0f} %){'  <-- over' if est['utilisation'][k] > max_util else ''}"
            for k in ("luts", "bram36", "dsps")]


def fabric(rows: list, cycles_per_image: float, images_per_s: float, total_luts: float, fifo: dict | None = None,
           keys=("luts", "dsps", "bram36"), fifo_label: str = "FIFOs") -> dict:
    """Where the fabric goes and how busy the XNOR lanes are: LUT / DSP / BRAM per op kind (rows:
    hw.cost's node rows, or Yosys' per-node counts with the same keys and an "op" field), plus the
    top's FIFOs as one more kind (``fifo_label``); the lanes' utilisation at ``cycles_per_image``, and binary MACs
    per second per LUT of ``total_luts`` (the whole top's)."""
    from hw.cost import by_op_kind, lane_use, macs_per_s_per_lut
    kinds = by_op_kind(rows, keys)
    if fifo:
        kinds[fifo_label] = dict(nodes=fifo.get("nodes", 0), **{k: fifo.get(k, 0) for k in keys})
        kinds = dict(sorted(kinds.items(), key=lambda kv: -kv[1][keys[0]]))
    lanes = lane_use(rows, cycles_per_image)
    return dict(by_op_kind=kinds, lanes=lanes, cycles_per_image=cycles_per_image, images_per_s=images_per_s,
                luts=total_luts, macs_per_s_per_lut=macs_per_s_per_lut(lanes["binary_macs"], images_per_s, total_luts))


def estimate_fabric(est: dict, design, cycles_per_image: float, images_per_s: float) -> dict:
    """:func:`fabric` of :func:`estimate`'s figures (hw.cost per node, the design's FIFOs as one
    kind) at a period of ``cycles_per_image``."""
    return fabric(est["cost"]["nodes"], cycles_per_image, images_per_s, est["used"]["luts"],
                  fifo=dict(nodes=sum(c.depth > 0 for c in design.channels), luts=est["fifo_luts"], dsps=0,
                            bram36=est["fifo_bram36"]))


def fabric_lines(fab: dict, source: str, keys=("luts", "dsps", "bram36")) -> list:
    """report.md's section of :func:`fabric`."""
    ln = fab["lanes"]
    md = ["## Where the fabric goes", "",
          f"XNOR lanes: {ln['lanes']:,} instantiated for {ln['binary_macs']:,} binary MACs per image, busy "
          f"**{100 * ln['utilisation']:.1f} %** at {fab['cycles_per_image']:,.0f} cycles per image. Binary MACs per second "
          f"per LUT: **{fab['macs_per_s_per_lut']:,.3g}** ({ln['binary_macs']:,} x {fab['images_per_s']:,.0f} images/s / "
          f"{fab['luts']:,.0f} LUT; {source}).", "",
          "| op kind | nodes | " + " | ".join(k.upper() for k in keys) + " | share of the LUTs |",
          "|---|---|" + "---|" * len(keys) + "---|"]
    total = sum(v[keys[0]] for v in fab["by_op_kind"].values()) or 1
    for kind, v in fab["by_op_kind"].items():
        md.append(f"| {kind} | {v['nodes']} | " + " | ".join(f"{v[k]:,g}" for k in keys)
                  + f" | {100 * v[keys[0]] / total:.1f} % |")
    return md + [""]


def fits(est: dict, max_util: float) -> bool:
    return all(u <= max_util for u in est["utilisation"].values())


def load_fifo_depths(path) -> dict:
    """{channel label: depth} from a JSON file (FlowInputError if it is missing or malformed)."""
    path = Path(path)
    if not path.exists():
        raise FlowInputError(f"FIFO depths file {path} does not exist (`make sim` writes one: fifo_depths.json)")
    try:
        depths = json.loads(path.read_text())
        depths = {str(k): int(v) for k, v in depths.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise FlowInputError(f"{path} is not a JSON object of channel -> depth: {exc}") from None
    if any(v < 2 for v in depths.values()):
        raise FlowInputError(f"{path}: every FIFO depth must be at least 2")
    return depths


def apply_fifo_depths(d, depths: dict) -> None:
    """Set the depths of the design's channels by label; labels the design lacks are an error
    (a file from another folding or model)."""
    by_label = {c.label: c for c in d.channels}
    unknown = sorted(set(depths) - set(by_label))
    if unknown:
        raise FlowInputError(f"the FIFO depths name {len(unknown)} channels this design does not have "
                             f"({', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''}): written for "
                             "another model or folding? Use it with the folding.json of the same run (--folding).")
    for label, depth in depths.items():
        by_label[label].depth = depth
        by_label[label].skew_depth = None      # set: no sizing to expect


def tables_back_to_bram(graph, image_shape, board, d, max_util: float) -> list:
    """Undo fold_for_board's TABLE_BRAM = 0 where the estimate of design ``d`` (e.g. with FIFOs
    sized from a simulation, which frees block RAM) still fits, the largest tables first; the
    names of the nodes changed."""
    from hw.cost import node_cost
    from hw.execute import stream_shapes
    from hw.ops.fixed_point import TABLE_BRAM
    shapes = stream_shapes(graph, 1, image_shape)
    back = []
    for _, i in sorted(((-node_cost(graph, n, shapes)["mem_bits"], i) for i, n in enumerate(graph.nodes)
                        if int(n.attrs.get(TABLE_BRAM, 1)) == 0)):
        n = graph.nodes[i]
        n.attrs.pop(TABLE_BRAM)
        if fits(estimate(graph, image_shape, board, d), max_util):
            back.append(n.name)
        else:
            n.attrs[TABLE_BRAM] = 0
    return back


def fold_for_board(graph, image_shape, board, target_cycles: int, max_util: float, make_design=None,
                   sized: bool = False) -> dict:
    """hw.cost.fold_for_target at the target.  While the estimate (nodes and the top's FIFOs of
    ``make_design(graph, image_shape)``, the HLS top by default; ``sized``: as `make sim` sizes
    them, :func:`estimate`) exceeds the board's block RAM, Affine / RPReLU tables go back to
    LUTs (TABLE_BRAM = 0, the smallest first); while it exceeds the board: map buffers drop to
    one bank (BANKS = 1, half their block RAM; the next image then waits for the last one's
    emission), the largest saving first; then the target is relaxed (x RELAX_STEP, fewer PEs).
    Returns {'target_cycles', 'relaxed', 'one_bank' (node names), 'tables_in_luts' (node names),
    'estimate'}; raises DesignTooLargeError when even the slowest folding does not fit."""
    from hw.cost import fold_for_target, neighbour_cycles, node_cost, node_period
    from hw.execute import stream_shapes
    from hw.hls_top import design
    from hw.ops import op_of
    from hw.ops.fixed_point import TABLE_BRAM
    shapes = stream_shapes(graph, 1, image_shape)
    target = target_cycles
    for _ in range(40):
        fold_for_target(graph, image_shape, target)
        for n in graph.nodes:
            n.attrs.pop(TABLE_BRAM, None)
        d = (make_design or design)(graph, image_shape)      # FIFO depths do not depend on the banks
        est = estimate(graph, image_shape, board, d, sized)
        one_bank, in_luts = [], []
        if est["utilisation"]["bram36"] > max_util:
            # a table in LUTs costs about its bits / 64 LUTs for the block RAM it frees
            tables = sorted((c["mem_bits"], i) for i, n in enumerate(graph.nodes) if op_of(n).table_placement
                            for c in [node_cost(graph, n, shapes)] if c["bram36"] > 0)
            for _, i in tables:
                if est["utilisation"]["bram36"] <= max_util:
                    break
                graph.nodes[i].attrs[TABLE_BRAM] = 0
                in_luts.append(graph.nodes[i].name)
                est = estimate(graph, image_shape, board, d, sized)
        if not fits(est, max_util):
            own = {r["name"]: r["cycles"] for r in est["cost"]["nodes"]}

            def with_one_bank(n):
                """(slower than the target with one bank, block RAM it saves)"""
                two = node_cost(graph, n, shapes)["bram36"]
                n.attrs["BANKS"] = 1
                c = node_cost(graph, n, shapes)
                n.attrs["BANKS"] = 2
                return node_period(c, *neighbour_cycles(graph, n, own)) > target, two - c["bram36"]
            # first the buffers that keep the target with one bank, the largest saving first
            order = sorted((with_one_bank(n), i) for i, n in enumerate(graph.nodes) if op_of(n).banked)
            order = sorted(order, key=lambda x: (x[0][0], -x[0][1]))
            for (_, gain), i in order:
                if fits(est, max_util):
                    break
                if gain <= 0:
                    continue
                graph.nodes[i].attrs["BANKS"] = 1
                one_bank.append(graph.nodes[i].name)
                est = estimate(graph, image_shape, board, d, sized)
        if fits(est, max_util):
            return dict(target_cycles=target, relaxed=target != target_cycles, one_bank=one_bank,
                        tables_in_luts=in_luts, estimate=est)
        if all(int(n.attrs.get("PE", 1)) == 1 and int(n.attrs.get("SIMD", 1)) == 1 for n in graph.nodes):
            break                                           # the slowest folding: nothing left to relax
        target = int(target * RELAX_STEP)
    raise DesignTooLargeError(f"the design does not fit {board.name} ({board.part}) even at the slowest folding "
                              "with one-bank map buffers:\n  " + "\n  ".join(resource_lines(est, max_util))
                              + "\nChoose a larger board (--board), or a smaller model.")


def flow_parser(prog: str, description: str, jobs: int, jobs_help: str):
    """The flow's argparse parser with --board, --target-cycles, --max-util, --folding, --jobs
    (default ``jobs``) and hw.cli's checkpoint / data options."""
    import argparse

    from hw.cli import add_common_args
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="pynq-z2", help="target board (default pynq-z2)")
    p.add_argument("--target-cycles", type=int, default=DEFAULT_TARGET_CYCLES,
                   help=f"cycles per image the folding aims at (default {DEFAULT_TARGET_CYCLES}); relaxed if the "
                        "design would not fit the board")
    p.add_argument("--max-util", type=float, default=DEFAULT_MAX_UTIL,
                   help=f"largest fraction of the device's LUT / BRAM / DSP the estimate may use (default {DEFAULT_MAX_UTIL})")
    p.add_argument("--folding", default=None, help="folding JSON ({node: {PE, SIMD}}), e.g. a folding.json of an earlier run")
    p.add_argument("--fifo-depths", default=None,
                   help="FIFO depths JSON ({channel: depth}) instead of the delay model's, e.g. the fifo_depths.json "
                        "`make sim` writes from the occupancy it measured (same folding)")
    p.add_argument("--jobs", type=int, default=jobs, help=jobs_help)
    add_common_args(p)
    return p


@dataclass
class Prepared:
    board: object
    inp: object              # hw.cli.HwInputs
    graph: object            # the folded dataflow graph
    image_shape: tuple
    folding_source: str
    design: object           # what make_design returned
    est: dict                # estimate() of the design against the board


def prepare(a, step: str, make_design, log=print) -> Prepared:
    """Board, integer network, folding, design and estimate for the flow ``step`` ("hls", "sim")
    from its parsed options; the output folder is build/<model>/<step>_<board> unless --out.
    ``make_design(graph, image_shape, model_name)`` builds the netlist whose FIFOs the estimate
    counts.  Raises FlowInputError for anything the user has to fix."""
    from hw import hls_top
    from hw.cli import HwInputError, load_inputs
    from hw.cost import FoldingError, check_folding
    from hw.execute import stream_shapes
    from hw.export import apply_folding_file
    from hw.passes import lower

    from flows.boards import UnknownBoardError, get_board
    try:
        board = get_board(a.board)
        if not 0 < a.max_util <= 1:
            raise FlowInputError(f"--max-util must be in (0, 1], got {a.max_util}")
        inp = load_inputs(a, f"{step}_{board.name}")
        # `make sim` sizes the FIFOs from a first run's occupancy before Yosys counts them: it
        # checks the fit with the FIFOs it expects to keep (estimate(sized=True))
        sized = step == "sim" and not (getattr(a, "no_size_fifos", False) or getattr(a, "fifo_depths", None))
        graph = lower(inp.net.graph)
        cfg = inp.model.cfg
        image_shape = (cfg.img_size, cfg.img_size, cfg.in_chans)
        if a.folding:
            apply_folding_file(graph, a.folding, f"`make {step}`")
            check_folding(graph, stream_shapes(graph, 1, image_shape))
            source = f"from {a.folding}"
        else:
            fb = fold_for_board(graph, image_shape, board, a.target_cycles, a.max_util, make_design, sized)
            source = (f"hw.cost.fold_for_target at {fb['target_cycles']:,} cycles/image"
                      + (f" (relaxed from {a.target_cycles:,} to fit {board.name})" if fb["relaxed"] else "")
                      + (f"; {len(fb['tables_in_luts'])} Affine / RPReLU kernels with their tables in LUTs to fit "
                         f"{board.name}'s block RAM" if fb["tables_in_luts"] else "")
                      + (f"; {len(fb['one_bank'])} map buffers with one bank to fit {board.name}: "
                         + ", ".join(fb["one_bank"]) if fb["one_bank"] else ""))
            if fb["relaxed"]:
                log(f"[{step}] note: {a.target_cycles:,} cycles/image does not fit {board.name}; folded for "
                    f"{fb['target_cycles']:,}")
        design = make_design(graph, image_shape, inp.name)
        if getattr(a, "fifo_depths", None):
            apply_fifo_depths(design, load_fifo_depths(a.fifo_depths))
        est = estimate(graph, image_shape, board, design, sized)
        if not fits(est, a.max_util):
            raise DesignTooLargeError(f"the design is estimated over {board.name}'s resources ({board.part}):\n  "
                                      + "\n  ".join(resource_lines(est, a.max_util))
                                      + "\nFold it less (fewer PE / SIMD in the folding JSON, or a larger "
                                        "--target-cycles) or choose a larger board.")
    except (UnknownBoardError, HwInputError, FoldingError, DesignTooLargeError, hls_top.DesignError) as exc:
        raise FlowInputError(str(exc)) from None
    cost = est["cost"]
    log(f"[{step}] {board.name} ({board.part}, {board.clock_mhz:.0f} MHz): {len(graph.nodes)} nodes, bottleneck "
        f"{cost['bottleneck']} {cost['cycles_per_image']:,} cycles/image -> {cost['images_per_s']:,.0f} images/s")
    for line in resource_lines(est, a.max_util):
        log(f"[{step}]   {line}")
    return Prepared(board, inp, graph, image_shape, source, design, est)


def prepare_or_exit(a, step: str, make_design, check=None):
    """``check(a)`` (the flow's own requirements), then :func:`prepare`; on a FlowInputError the
    message goes to stderr and the result is None (the flow exits with code 2)."""
    try:
        if check is not None:
            check(a)
        return prepare(a, step, make_design)
    except FlowInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def write_folding(folder: Path, graph) -> None:
    """folding.json: the folding of every node, re-usable with --folding."""
    from hw.export import folding_of
    from model.checkpoint import atomic_write_bytes
    atomic_write_bytes(Path(folder) / "folding.json", lambda fh: fh.write(json.dumps(folding_of(graph), indent=1).encode()))


def golden_data(graph, test, n: int):
    """The first ``n`` test images (N, H, W, C) int64 and the golden model's logits on them."""
    from hw.execute import run
    images = test.images[:n].numpy().transpose(0, 2, 3, 1).astype(np.int64)
    return images, run(graph, images)


def board_dict(board) -> dict:
    return asdict(board)


def command_line(prog: str, argv) -> str:
    return f"python -m {prog} " + " ".join(argv if argv is not None else sys.argv[1:])


def write_report(folder: Path, res: dict, md: list, plot) -> None:
    """report.json (``res``), report.md (``md`` lines) and report.png (``plot(path, res)``),
    each written atomically."""
    from model.checkpoint import atomic_write_bytes
    folder = Path(folder)
    atomic_write_bytes(folder / "report.json", lambda fh: fh.write(json.dumps(res, indent=2, default=str).encode()))
    atomic_write_bytes(folder / "report.md", lambda fh: fh.write("\n".join(md).encode()))
    plot(folder / "report.png", res)


def plot_cycles_and_resources(path: Path, title: str, rows: list, bottleneck: str, groups: dict, part: str,
                              limit: float | None = None, period: float | None = None, period_label: str = "",
                              resources_title: str = "resources") -> None:
    """Left: cycles per image of every node (``rows``: dicts with name, cycles; graph order; the
    bottleneck red; ``period``: a measured cycles-per-image line).  Right: resource utilisation
    in % of the device, one bar group per entry of ``groups`` {label: {resource: percent}};
    ``limit``: a dashed line at that percentage."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw=dict(width_ratios=[4, 1.3]))
    colors = ["tab:red" if r["name"] == bottleneck else "tab:blue" for r in rows]
    a0.bar(range(len(rows)), [r["cycles"] for r in rows], color=colors, width=1.0)
    if period is not None:
        a0.axhline(period, color="k", ls="--", lw=1, label=period_label)
        a0.legend(loc="lower right", fontsize=8)
    a0.set_yscale("log")
    a0.set_xlabel("node (graph order)")
    a0.set_ylabel("cycles per image")
    a0.set_title(title, fontsize=10)
    keys = list(next(iter(groups.values())))
    width = 0.8 / len(groups)
    for j, (label, vals) in enumerate(groups.items()):
        a1.bar([i + (j - (len(groups) - 1) / 2) * width for i in range(len(keys))], [vals[k] for k in keys],
               width=width, label=label)
    a1.set_xticks(range(len(keys)), keys)
    if limit is not None:
        a1.axhline(limit, color="k", ls="--", lw=1)
    if len(groups) > 1:
        a1.legend(fontsize=8)
    a1.set_ylabel(f"% of {part}")
    a1.set_title(resources_title, fontsize=10)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".part.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
