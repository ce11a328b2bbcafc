"""`make sim BOARD=pynq-z2`: the whole design as RTL, cycle-accurate in Verilator, and counted by Yosys.

    python -m flows.sim --board pynq-z2 --ckpt checkpoints/bhvit_pynq_fmnist/model.pt --images 100

Steps:

1-3. as `make hls` (flows/common.py ``prepare``): the board, the integer network folded for
   ``--target-cycles`` within ``--max-util`` of the board (or ``--folding``), the estimate
   against the device; bad input exits with code 2 before anything is built;
4. the stitched SystemVerilog top of every node (hw/rtl_top.py: the HLS top's FIFOs, forks
   and gearboxes around the kernels of templates/rtl/), verilated (hw.rtlsim.build; cached
   under build/rtlsim, minutes the first time);
5. ``--images`` Fashion-MNIST test images streamed through it back to back (no input gaps,
   output always ready), the logits compared with the golden model's (np.array_equal):
   measured cycles per image in steady state, latency of one image, the FIFOs that filled;
5b. unless ``--no-size-fifos`` or ``--fifo-depths``: every FIFO set to the largest occupancy
   that run measured + FIFO_SLACK (fifo_depths.json), the top rebuilt with those depths and
   simulated again (FINN sizes its FIFOs the same way); steps 6-7 are the sized top's;
6. Yosys ``synth_xilinx`` of every distinct module, summed over the instances
   (hw/yosys.py; cached under build/yosys, 20-30 min the first time for the shipped
   model with 2 jobs), against the device and beside the analytical estimate (``--no-synth``
   skips it);
6b. a static timing estimate at ``--clock`` MHz (default the board's clock; hw/timing.py,
   docs/timing.md): every distinct module's critical path (Yosys ``sta`` cell delays plus a
   routing, clock-to-out, setup and uncertainty model of the board's family) and the ready
   chains of direct links across modules; skipped with ``--no-synth``;
7. ``build/<model>/sim_<board>/``: report.md, report.json, report.png (per-layer cycles of the
   cost model against the measured period, resources), folding.json, logits.npy (the RTL top's).

Exit codes: 0 RTL logits == golden, 1 they differ (or the simulation failed), 2 bad input.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from flows.common import (FlowInputError, apply_fifo_depths, board_dict, command_line, estimate, fabric_lines,
                          flow_parser, golden_data, plot_cycles_and_resources, prepare_or_exit, tables_back_to_bram, write_folding,
                          write_report)

IDLE_CYCLES = 200_000      # no word moving for this long is a deadlock (the largest map buffers fill in less)


def idle_limit(graph, image_shape) -> int:
    """Cycles without a word in or out of the top after which a simulation is a deadlock: at
    least IDLE_CYCLES and twice the cost model's latency (the sum of the nodes' cycles per
    image).  After the last input word the top moves no word until the first result leaves it,
    so a fixed limit called a slowly folded top deadlocked (the PYNQ-Z2 top folded for 33,750
    cycles per image on 4 images: its first result leaves after more than 200,000 idle cycles)."""
    from hw.cost import graph_cost
    return max(IDLE_CYCLES, 2 * graph_cost(graph, image_shape)["latency_cycles"])
RESOURCES = ("LUT", "FF", "BRAM", "DSP")
ESTIMATE_KEY = dict(LUT="luts", BRAM="bram36", DSP="dsps")      # flows.common.estimate's names; no FF there


def tool_version(cmd: list) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (res.stdout.strip() or res.stderr.strip()).splitlines()[0] if (res.stdout or res.stderr) else "?"


def measure(res, images: int, clock_mhz: float) -> dict:
    """Cycles per image (steady state: mean interval between the completions of consecutive
    images' logits), its spread, and the latency of the first image (its first pixel word
    taken -> its last logit word out) from a free-running hw.rtlsim.simulate result."""
    per_image = res.out_cycles.size // images          # output words per image
    ends = res.out_cycles[per_image - 1::per_image]
    gaps = np.diff(ends)
    period = float(gaps.mean())
    latency = int(ends[0] - res.in_cycles[0][0])
    return dict(cycles_per_image=period, min_interval=int(gaps.min()), max_interval=int(gaps.max()),
                images_per_s=clock_mhz * 1e6 / period, latency_cycles=latency, latency_us=latency / clock_mhz,
                total_cycles=int(res.cycles))


def write_sim_report(folder: Path, res: dict) -> None:
    from hw.rtl_top import READY_CHAIN
    from hw.timing import READY_LUT_LEVELS
    b, m, cost, est = res["board"], res["measured"], res["estimate"]["cost"], res["estimate"]
    syn = res.get("synth")
    dev = res["cost_deviation_pct"]
    build = "cached" if res["build_s"] < 1 else f"{res['build_s']:.0f} s"
    tim = res.get("timing")
    md = [f"# RTL simulation of {res['model']} for {b['name']} ({b['part']}, {b['clock_mhz']:.0f} MHz)", "",
          f"Command: `{res['command']}`", "", f"Folding: {res['folding_source']}.", "",
          *([timing_summary(tim), ""] if tim else []),
          f"Logits of the RTL top on {res['images']} Fashion-MNIST test images: "
          f"**{'equal to the golden model' if res['equal'] else 'MISMATCH'}** (np.array_equal; "
          f"{res['mismatched_images']} images differ).", "",
          "## Throughput and latency", "",
          "| | measured (Verilator) | cost model (hw.cost) | deviation |", "|---|---|---|---|",
          f"| cycles per image (steady state) | {m['cycles_per_image']:,.1f} | {cost['cycles_per_image']:,} | "
          f"{dev:+.1f} % |",
          f"| images/s at {b['clock_mhz']:.0f} MHz | {m['images_per_s']:,.0f} | {cost['images_per_s']:,.0f} | |",
          f"| latency of one image | {m['latency_cycles']:,} cycles = {m['latency_us']:,.1f} us | at most "
          f"~{cost['latency_cycles']:,} cycles (every node in sequence) | |", "",
          f"Bottleneck by the cost model: `{cost['bottleneck']}` ({cost['cycles_per_image']:,} cycles/image, "
          f"{100 * cost['cycles_per_image'] / m['cycles_per_image']:.0f} % of the measured period). Intervals between "
          f"consecutive images: {m['min_interval']:,} to {m['max_interval']:,} cycles; {m['total_cycles']:,} cycles "
          f"for all {res['images']} images.", "",
          f"Channels: {res['fifos']} FIFOs and {res['direct_links']} direct links (two-word FIFOs replaced by wires where "
          f"the ready path stays within {READY_CHAIN} processes, hw.rtl_top.direct_links).", "",
          f"FIFOs that reached their depth: {len(res['fifos_full'])} of {res['fifos']}"
          + (": " + ", ".join(f"`{f}`" for f in res["fifos_full"]) if res["fifos_full"] else "") + ".", "",
          *(sizing_lines(res.get("fifo_sizing"), res["fifo_bram36"])),
          "Kernels holding the pipeline back, measured (an input FIFO's writer blocked, the output's not):", "",
          "| node | cycles an input FIFO was full | cycles its output FIFO was full |", "|---|---|---|",
          *[f"| {b['node']} | {100 * b['input_full']:.1f} % | {100 * b['output_full']:.1f} % |"
            for b in res["measured_bottlenecks"]], "",
          "## Resources", ""]
    if syn:
        t = syn["totals"]
        md += [f"| resource | Yosys (sum of {syn['modules']} modules, {syn['instances']} instances) | of device | "
               "analytical estimate | of device |", "|---|---|---|---|---|"]
        for k in RESOURCES:
            used, avail, frac = syn["utilisation"][k]
            ek = ESTIMATE_KEY.get(k)
            e = (f"{est['used'][ek]:,} | {100 * est['utilisation'][ek]:.1f} %" if ek else "- | -")
            md.append(f"| {k}{' (slice: logic + memory)' if k == 'LUT' else ''} | {used:,} | "
                      f"{100 * frac:.1f} % of {avail:,} | {e} |")
        md += ["", "| part | LUT (logic) | LUTRAM cells | FF | BRAM36 | DSP | CARRY |", "|---|---|---|---|---|---|---|"]
        for part in ("nodes", "fifo", "fork", "refold", "total"):
            r = t[part]
            md.append(f"| {dict(fifo='FIFOs', fork='forks', refold='gearboxes').get(part, part)} | {r['LUT']:,} | "
                      f"{r['LUTRAM']:,} | {r['FF']:,} | {r['BRAM']:g} | {r['DSP']:,} | {r['CARRY']:,} |")
        md.append("")
    else:
        md += [f"Yosys was not run ({res['synth_skipped']}). Analytical estimate (hw.cost + FIFOs): "
               + ", ".join(f"{k} {est['used'][ek]:,} ({100 * est['utilisation'][ek]:.1f} %)"
                           for k, ek in ESTIMATE_KEY.items()) + ".", ""]
    md += timing_lines(tim)
    if res.get("fabric"):
        md += fabric_lines(res["fabric"], "Yosys' LUTs and the measured period" if syn else
                           "hw.cost's LUTs (FIFOs included) and the measured period")
    md += ["## How each figure was measured", "",
           f"* Logits, cycles, latency, FIFOs: `{res['command']}` builds the stitched top "
           f"(`hw.rtl_top.rtl_top`) with Verilator ({res['tools']['verilator']}; `hw.rtlsim.build`, "
           f"{build}) and runs `hw.rtlsim.simulate(top, images, idle={res.get('idle_cycles', IDLE_CYCLES):,})` (flows.sim.idle_limit): the "
           f"{res['images']} images back to back, every input word valid as soon as it may be, the output always "
           f"ready ({res['simulate_s']:.0f} s). Cycles per image = mean interval between the cycles in which "
           "consecutive images' last logit words leave the top; latency = first pixel word taken -> last logit "
           "word of image 0 out; FIFO occupancies are the largest each FIFO held. Golden: `hw.execute.run` on the "
           "same images.",
           "* Cost model: `hw.cost.graph_cost` (cycles per node from its folding; the slowest node is the predicted "
           "period); deviation = (measured - predicted) / predicted.",
           ("* Yosys: `hw.yosys.top_resources` runs `read_slang; synth_xilinx -family "
            f"{syn['family']} -noiopad; stat -json` ({res['tools']['yosys']}) on every distinct module (each "
            "node's kernel, every FIFO width x depth, fork and gearbox through a wrapper) and sums the counts "
            f"times the instances ({syn['seconds']:.0f} s, cached in build/yosys). Optimisation across module "
            "boundaries is not seen (an upper bound of a flat synthesis); Vivado maps differently in detail. Slice "
            "LUTs = logic LUTs + LUTs of LUT memories and shift registers.") if syn else "* Yosys: not run.",
           "* Analytical estimate: `flows.common.estimate` (hw.cost per node plus the top's FIFOs), as `make hls` "
           "reports it.",
           (f"* Timing: `hw.timing.design_timing` runs `synth_xilinx -family xc7 -noclkbuf` and `sta` against "
            "Yosys' Xilinx cell library (its specify blocks) on every distinct module and adds the delay model "
            f"`{tim['delay_model']['name']}` ({tim['delay_model']['source']}); the ready chains of direct links "
            f"are {READY_LUT_LEVELS} LUT level and a routing hop per module ({tim['seconds']:.0f} s, cached in "
            "build/timing; docs/timing.md). An estimate without placement or routing, not a Vivado timing "
            "report.") if tim else f"* Timing: not estimated ({res.get('timing_skipped') or 'needs Yosys'}).", "",
           "## Per layer", "",
           "| node | op | PE | SIMD | cost cycles/image | cycles / measured period |"
           + (" LUT | FF | BRAM36 | DSP |" if syn else ""),
           "|---|---|---|---|---|---|" + ("---|---|---|---|" if syn else "")]
    ys = {r["name"]: r for r in syn["nodes"]} if syn else {}
    for r in res["layers"]:
        line = (f"| {r['name']} | {r['op']} | {r['PE']} | {r['SIMD'] or ''} | {r['cycles']:,} | "
                f"{100 * r['utilisation']:.1f} % |")
        if syn:
            y = ys[r["name"]]
            line += f" {y['device_LUT']:,} | {y['FF']:,} | {y['BRAM']:g} | {y['DSP']:,} |"
        md.append(line)
    md += ["", "![cycles per layer and resources](report.png)", ""]
    write_report(folder, res, md, plot)


def sim_fabric(cost: dict, est: dict, synth: dict | None, d, m: dict) -> dict:
    """flows.common.fabric at the measured period: LUT / DSP / BRAM per op kind from Yosys' per-node
    counts (FIFOs, forks and gearboxes as one more kind) where Yosys ran, else the estimate's."""
    from flows.common import estimate_fabric, fabric
    if synth is None:
        return estimate_fabric(est, d, m["cycles_per_image"], m["images_per_s"])
    ys = {r["name"]: r for r in synth["nodes"]}
    rows = [dict(r, luts=ys[r["name"]]["device_LUT"], dsps=ys[r["name"]]["DSP"], bram36=ys[r["name"]]["BRAM"])
            for r in cost["nodes"]]
    p = synth["totals"]["plumbing"]
    return fabric(rows, m["cycles_per_image"], m["images_per_s"], synth["totals"]["total"]["device_LUT"],
                  fifo=dict(nodes=sum(r["instances"] for r in synth["plumbing"]), luts=p["device_LUT"], dsps=p["DSP"],
                            bram36=p["BRAM"]), fifo_label="FIFOs, forks, gearboxes")


def timing_summary(tim: dict) -> str:
    """One sentence: does the estimate meet the clock."""
    verdict = "meets" if tim["meets"] else "**misses**"
    return (f"Timing estimate: the worst path, {tim['worst_ns']:.2f} ns ({tim['worst_kind']} `{tim['worst_path']}`), "
            f"{verdict} the {tim['clock_mhz']:g} MHz clock ({tim['clock_ns']:.2f} ns); estimated Fmax "
            f"{tim['fmax_mhz']:.0f} MHz.")


def timing_lines(tim) -> list:
    """report.md's table of the 10 worst paths."""
    if not tim:
        return []
    md = ["## Timing estimate", "", timing_summary(tim) + f" Worst module: `{tim['worst_module']}` "
          f"({tim['worst_module_ns']:.2f} ns); {len(tim['ready_paths'])} ready chains across modules.", "",
          "| path | kind | ns | Fmax MHz | start | end | cells | nets |", "|---|---|---|---|---|---|---|---|"]
    for p in tim["paths"]:
        md.append(f"| {p['name']} | {p['kind']} | {p['total_ns']:.2f} | {1000 / p['total_ns']:.0f} | "
                  f"{p['start']} | {p['end']} | {p['cells']} | {p['nets']} |" if p["total_ns"] else
                  f"| {p['name']} | {p['kind']} | 0 | - | | | 0 | 0 |")
    return md + [""]


def sizing_lines(sizing, bram) -> list:
    """report.md's paragraph on the FIFO depths."""
    if not sizing:
        return [f"FIFOs sized from the measured occupancy (largest + {FIFO_SLACK} words; `fifo_depths.json`, for "
                f"`--fifo-depths` with this run's `--folding folding.json`): {bram['measured']:g} BRAM36 instead of "
                f"{bram['delay_model']:g} with the delay model's depths. This run kept the depths it was given.", ""]
    f, z = sizing["first_run"], sizing["sized_run"]
    return [f"FIFO depths: a first run with the delay model's depths ({f['fifo_bram36']:g} BRAM36 of FIFOs; "
            f"{f['cycles_per_image']:,.1f} cycles/image, logits "
            f"{'equal to the golden model' if f['equal'] else 'MISMATCH'}) measured every FIFO's occupancy; "
            f"{f['depths_changed']} depths were set to the largest occupancy + {FIFO_SLACK} words "
            f"(`fifo_depths.json`), and the top was rebuilt with them ({z['fifo_bram36']:g} BRAM36 of FIFOs"
            + (f"; the block RAM this frees holds the tables of {len(f['tables_to_bram'])} more Affine / RPReLU "
               "kernels, which the folding had left in LUTs" if f.get("tables_to_bram") else "") + "). "
            "Every figure of this report but that first run is the sized top's.", ""]


def plot(path: Path, res: dict) -> None:
    cost, est, m = res["estimate"]["cost"], res["estimate"], res["measured"]
    groups = {}
    if res.get("synth"):
        groups["Yosys"] = {k: 100 * res["synth"]["utilisation"][k][2] for k in RESOURCES}
    groups["estimate"] = {k: 100 * est["utilisation"][ESTIMATE_KEY[k]] if k in ESTIMATE_KEY else float("nan")
                          for k in RESOURCES}
    plot_cycles_and_resources(
        path, f"{res['model']}: measured {m['cycles_per_image']:,.0f} cycles/image; cost model bottleneck "
              f"{cost['bottleneck']} ({cost['cycles_per_image']:,})", cost["nodes"], cost["bottleneck"], groups,
        res["board"]["part"], limit=100.0, period=m["cycles_per_image"], period_label="measured (Verilator)")


FIFO_SLACK = 2     # words above the largest occupancy measured


def sized_fifo_depths(fifos: dict) -> dict:
    """{label: depth} from a simulation's {label: (now, largest, depth)}: the largest occupancy
    plus FIFO_SLACK where it stayed below the depth, never deeper than it was; a FIFO that
    filled keeps its depth (how much more it wanted is unknown)."""
    return {label: (depth if mx >= depth else min(depth, max(2, mx + FIFO_SLACK)))
            for label, (_, mx, depth) in fifos.items()}


def fifo_block_ram(channels, depths: dict | None = None) -> float:
    """RAMB36 of the FIFOs (flows.common.estimate's rule) at their depths or at ``depths``."""
    from hw.resources import fifo_block_ram36
    return float(sum(fifo_block_ram36((depths or {}).get(c.label, c.depth), c.bits) for c in channels))


def check_request(a) -> None:
    """What `make sim` needs besides `make hls`'s inputs: two images or more, Verilator, and Yosys
    unless --no-synth (FlowInputError otherwise)."""
    from hw import rtlsim, yosys
    if a.clock is not None and not a.clock > 0:
        raise FlowInputError(f"--clock must be a positive frequency in MHz, got {a.clock:g}")
    if a.images < 2:
        raise FlowInputError(f"--images must be at least 2 (a period needs two images), got {a.images}")
    try:
        rtlsim.verilator()
    except rtlsim.RtlSimError as exc:
        raise FlowInputError(str(exc)) from None
    if not a.no_synth:
        try:
            yosys.check_yosys()
        except yosys.YosysError as exc:
            raise FlowInputError(f"{exc} (or skip the resource counts: --no-synth)") from None


class SimRun:
    """One `make sim`: the prepared design (flows.common.Prepared), its test images and golden
    logits; simulate() builds and runs the top, check() compares and measures, size_fifos()
    reruns with the measured FIFO depths, synthesize() counts the top with Yosys."""

    def __init__(self, a, pr):
        from hw import rtl_top, rtlsim
        self.a, self.pr, self.rtl_top, self.rtlsim = a, pr, rtl_top, rtlsim
        self.graph, self.shape, self.board, self.inp = pr.graph, pr.image_shape, pr.board, pr.inp
        self.n = min(a.images, len(pr.inp.test.images))
        self.images, self.logits = golden_data(self.graph, pr.inp.test, self.n)
        self.idle = idle_limit(self.graph, self.shape)
        self.build_s = self.sim_s = 0.0

    def simulate(self, label: str = ""):
        """Build the top of the current design and stream the images through it."""
        d = self.pr.design
        top = self.rtl_top.rtl_top(self.graph, self.shape, self.inp.name, d=d)
        fifos = sum(c.depth > 0 for c in d.channels)
        print(f"[sim] verilating the top{label} ({len(self.graph.nodes)} nodes, {fifos} FIFOs, "
              f"{len(d.channels) - fifos} direct links; cached in {self.rtlsim.CACHE})")
        t1 = time.time()
        self.rtlsim.build(top)
        t2 = time.time()
        print(f"[sim] simulating {self.n} test images")
        run = self.rtlsim.simulate(top, self.images.reshape(-1, self.shape[-1]), idle=self.idle)
        self.build_s += t2 - t1
        self.sim_s += time.time() - t2
        return run

    def check(self, run, label: str = ""):
        """(logits, equal, images that differ, measured cycles) of a run."""
        got = run.out.reshape(self.logits.shape)
        equal = bool(np.array_equal(got, self.logits))
        bad = int((got != self.logits).any(axis=1).sum())
        m = measure(run, self.n, self.board.clock_mhz)
        print(f"[sim] RTL logits{label} on {self.n} test images: "
              f"{'equal to the golden model' if equal else f'MISMATCH: {bad} images differ from the golden model'}; "
              f"{m['cycles_per_image']:,.1f} cycles/image")
        return got, equal, bad, m

    def size_fifos(self, sized: dict, first: dict, fifo_bram: dict):
        """FINN's way: the depths the first run needed, the design rebuilt with them (the block RAM
        they free takes back tables that fold_for_board kept in LUTs), simulated again.  Returns
        (run, check(run), the sizing record)."""
        pr, graph, shape = self.pr, self.graph, self.shape
        delay_depths = {c.label: c.depth for c in pr.design.channels}
        changed = sum(sized[k] != delay_depths[k] for k in sized)
        apply_fifo_depths(pr.design, sized)
        print(f"[sim] FIFOs sized from the measured occupancy (largest + {FIFO_SLACK} words): {changed} of "
              f"{len(sized)} depths changed, {fifo_bram['measured']:g} BRAM36 instead of "
              f"{fifo_bram['delay_model']:g}; rebuilding with them")
        back = tables_back_to_bram(graph, shape, self.board, pr.design, self.a.max_util)
        if back:
            print(f"[sim] with the sized FIFOs, {len(back)} Affine / RPReLU kernels keep their tables in block RAM "
                  f"again: {', '.join(back)}")
            pr.design = self.rtl_top.rtl_design(graph, shape, self.inp.name)
            apply_fifo_depths(pr.design, sized)
            write_folding(self.inp.out, graph)
        first = dict(first, fifo_bram36=fifo_bram["delay_model"], depths_changed=changed, tables_to_bram=back)
        run = self.simulate(" with the sized FIFOs")
        checked = self.check(run, " (sized FIFOs)")
        _, equal2, bad2, m = checked
        sizing = dict(first_run=first, sized_run=dict(cycles_per_image=m["cycles_per_image"], equal=equal2,
                                                       mismatched_images=bad2, fifo_bram36=fifo_bram["measured"]))
        return run, checked, sizing

    def timing(self, clock_mhz: float):
        """Timing estimate of the whole top at ``clock_mhz`` (hw.timing.design_timing)."""
        from hw import timing
        tim = timing.design_timing(self.graph, self.shape, self.inp.name, d=self.pr.design, clock_mhz=clock_mhz,
                                   family=timing.delay_model(self.board).name.split("-")[0], jobs=self.a.jobs,
                                   delay=timing.delay_model(self.board))
        print(f"[sim] timing estimate: worst path {tim['worst_ns']:.2f} ns ({tim['worst_kind']} {tim['worst_path']}), "
              + ("meets" if tim["meets"] else "MISSES") + f" the {clock_mhz:g} MHz clock ({tim['clock_ns']:.2f} ns)")
        return tim

    def synthesize(self):
        """Yosys counts of the whole top against the board (hw.yosys.top_resources)."""
        from hw import yosys
        family = yosys.YOSYS_FAMILY[self.board.family]
        synth = yosys.top_resources(self.graph, self.shape, self.inp.name, d=self.pr.design, jobs=self.a.jobs,
                                    family=family)
        synth["utilisation"] = yosys.utilisation(synth["totals"]["total"], self.board)
        for k, (used, avail, frac) in synth["utilisation"].items():
            print(f"[sim]   Yosys {k:4s} {used:>9,} of {avail:>8,} ({100 * frac:5.1f} %)")
        return synth


def main(argv=None) -> int:
    p = flow_parser("flows.sim", __doc__, 2, "parallel Yosys processes (default 2)")
    p.add_argument("--images", type=int, default=100, help="test images through the RTL top (default 100, at least 2)")
    p.add_argument("--no-synth", action="store_true", help="skip the Yosys counts and the timing estimate")
    p.add_argument("--clock", type=float, default=None, metavar="MHZ",
                   help="clock the timing estimate is checked against (default the board's)")
    p.add_argument("--no-timing", action="store_true",
                   help="count resources with Yosys but skip the timing estimate (a Yosys sta per module: the "
                        "slowest step, minutes for the largest modules; cached under build/timing)")
    p.add_argument("--no-size-fifos", action="store_true",
                   help="keep the delay model's FIFO depths (default: size them from the first run's occupancy, "
                        "rebuild and simulate again; not with --fifo-depths, which sets them)")
    a = p.parse_args(argv)
    t0 = time.time()
    from hw import rtl_top, rtlsim, yosys
    pr = prepare_or_exit(a, "sim", rtl_top.rtl_design, check_request)
    if pr is None:
        return 2
    board, inp, graph, shape = pr.board, pr.inp, pr.graph, pr.image_shape
    folder = inp.out
    write_folding(folder, graph)
    sim = SimRun(a, pr)
    n = sim.n
    try:
        run = sim.simulate()
        got, equal, bad, m = sim.check(run)
        sized = sized_fifo_depths(run.fifos)
        fifo_bram = dict(delay_model=fifo_block_ram(pr.design.channels),
                         measured=fifo_block_ram(pr.design.channels, sized))
        sizing = None
        if not (a.no_size_fifos or a.fifo_depths):
            first = dict(cycles_per_image=m["cycles_per_image"], equal=equal, mismatched_images=bad)
            run, (got, equal2, bad2, m), sizing = sim.size_fifos(sized, first, fifo_bram)
            equal, bad = equal and equal2, max(bad, bad2)
    except rtlsim.RtlSimError as exc:
        print(f"error: RTL simulation failed: {exc}", file=sys.stderr)
        return 1
    est = estimate(graph, shape, board, pr.design)
    np.save(folder / "logits.npy", got)
    cost = est["cost"]
    dev = 100 * (m["cycles_per_image"] - cost["cycles_per_image"]) / cost["cycles_per_image"]
    print(f"[sim] measured {m['cycles_per_image']:,.1f} cycles/image -> {m['images_per_s']:,.0f} images/s at "
          f"{board.clock_mhz:.0f} MHz; cost model {cost['cycles_per_image']:,} ({dev:+.1f} %); latency "
          f"{m['latency_cycles']:,} cycles = {m['latency_us']:,.1f} us")
    full = sorted(name for name, (_, mx, depth) in run.fifos.items() if mx >= depth)
    from model.checkpoint import atomic_write_bytes
    atomic_write_bytes(folder / "fifo_depths.json", lambda fh: fh.write(json.dumps(sized, indent=1).encode()))
    print(f"[sim] FIFO depths from the measured occupancy: fifo_depths.json (use with --fifo-depths and "
          f"--folding {folder / 'folding.json'}): {fifo_bram['measured']:g} BRAM36 instead of "
          f"{fifo_bram['delay_model']:g}" + (f"; {len(full)} FIFOs reached their depth" if full else ""))
    slow = [dict(node=name, input_full=fi, output_full=fo)
            for name, fi, fo in rtl_top.measured_bottlenecks(pr.design, run.stalls, run.cycles)]
    layers = [dict(name=r["name"], op=r["op"], PE=r["PE"], SIMD=r["SIMD"], cycles=r["cycles"],
                   utilisation=r["cycles"] / m["cycles_per_image"]) for r in cost["nodes"]]
    synth = tim = None
    if not a.no_synth:
        from hw.timing import TimingError
        try:
            synth = sim.synthesize()
            tim = None if a.no_timing else sim.timing(a.clock or board.clock_mhz)
        except (yosys.YosysError, TimingError) as exc:
            print(f"error: Yosys failed: {exc}", file=sys.stderr)
            return 1
    fab = sim_fabric(cost, est, synth, pr.design, m)
    print(f"[sim] XNOR lanes busy {100 * fab['lanes']['utilisation']:.1f} % ({fab['lanes']['lanes']:,} lanes) at the "
          f"measured period; {fab['macs_per_s_per_lut']:,.3g} binary MACs/s per LUT")
    tools = dict(verilator=tool_version([rtlsim.verilator(), "--version"]),
                 yosys=tool_version([*yosys.yosys_cmd(), "-V"]) if synth else "")
    res = dict(model=inp.name, checkpoint=str(a.ckpt), command=command_line("flows.sim", argv), board=board_dict(board),
               max_util=a.max_util, folding_source=pr.folding_source, images=n, equal=equal, mismatched_images=bad,
               measured=m, cost_deviation_pct=dev, estimate=est, layers=layers, fifos=len(run.fifos),
               direct_links=sum(c.depth == 0 for c in pr.design.channels), fifos_full=full, fifo_bram36=fifo_bram,
               fifo_sizing=sizing, measured_bottlenecks=slow, synth=synth, timing=tim, fabric=fab,
               timing_skipped="--no-synth" if synth is None else ("--no-timing" if a.no_timing else ""),
               synth_skipped="--no-synth" if synth is None else "", tools=tools, build_s=round(sim.build_s, 1),
               simulate_s=round(sim.sim_s, 1), idle_cycles=sim.idle, seconds=round(time.time() - t0, 1))
    write_sim_report(folder, res)
    print(f"[sim] wrote {folder}/report.md, report.json, report.png ({res['seconds']:.0f} s)")
    if tim and not tim["meets"]:
        print(f"warning: the timing estimate misses the {tim['clock_mhz']:g} MHz clock: worst path "
              f"{tim['worst_ns']:.2f} ns ({tim['worst_path']}), estimated Fmax {tim['fmax_mhz']:.0f} MHz", file=sys.stderr)
    if not equal:
        print(f"error: the RTL top's logits differ from the golden model on {bad} of {n} images", file=sys.stderr)
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
