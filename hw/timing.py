"""A static timing estimate of every module of a design: "does it close timing at the board clock?".

Nothing here places or routes.  The figures are cell delays from Yosys plus a documented model of
what Yosys does not see (docs/timing.md has the method and the sources):

* :func:`module_timing` maps one module with Yosys ``synth_xilinx`` (7-series cells, whose
  library carries timing arcs), reads the cell library again with its ``specify`` blocks, and
  runs ``sta``: the latest-arriving path through the module's cells, from a module input or a
  register's clock to a register's input or a module output.  To its cell delay it adds the
  :class:`DelayModel` of the device family: one routing hop per general-purpose net on the path
  (carry-chain, DSP-cascade and wide-mux connections are dedicated wires, no hop), the data
  sheet's clock-to-out where the path starts at a module input (a register in the neighbouring
  module), the data sheet's setup where it ends at a flip-flop's D or a module output, and the
  clock uncertainty.  Cached under build/timing/ by the hash of the source and the script.
* :func:`ready_paths` lists the combinational ready paths that cross modules in the stitched
  top: the chains of direct links (:func:`hw.rtl_top.direct_links`) through kernels, forks and
  gearboxes whose input ready follows their output ready.  Each is estimated with a fixed
  number of LUT levels per module it passes (:data:`READY_LUT_LEVELS`) and a routing hop each.
* :func:`design_timing` puts both together for a whole design: per distinct module
  (:func:`hw.yosys.parts_of`), the ready paths, the worst path against the clock.

Yosys' cell delays come with its Xilinx library (``+/xilinx/cells_sim.v``): figures from
Project X-Ray's Artix-7 timing database (a 7-series -1 part).  Yosys has no timing arcs for the
UltraScale+ carry (CARRY8) and DSP (DSP48E2) cells, so an UltraScale+ module is mapped to 7-series
cells as well and its cell delays are scaled by the family's ``cell_scale``.
"""
from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import cache

ROOT = Path(__file__).resolve().parents[1]
TIMING_CACHE = ROOT / "build" / "timing"


@dataclass(frozen=True)
class DelayModel:
    """What the cell delays of Yosys leave out, in ns, for one device family and speed grade.

    ``tco``: clock-to-out of a fabric flip-flop, added where a path starts at a module input
    (launched by a register in another module; Yosys' own flip-flop clock-to-out is on the path
    where it starts inside the module).  ``setup``: setup of a fabric flip-flop's D input, added
    where a path ends at a flip-flop's D (Yosys' library gives 0 there) or at a module output (a
    register in the next module).  ``uncertainty``: clock jitter and skew, added once per path.
    ``net``: one general-purpose routing hop.  ``cell_scale``: factor on Yosys' (7-series -1)
    cell delays.  ``lut``: one LUT level of the ready-path model (Yosys' slowest LUT6 input,
    I0 -> O, 0.642 ns, times ``cell_scale``)."""
    name: str
    tco: float
    setup: float
    uncertainty: float
    net: float
    cell_scale: float
    source: str

    @property
    def lut(self) -> float:
        return round(0.642 * self.cell_scale, 4)


# Sources (docs/timing.md has the table and the reasoning):
#  * tco, setup: of the order the CLB switching characteristics of the data sheets give, Zynq-7000
#    "DC and AC Switching Characteristics" (DS187; Tcko, Tdick at speed grade -1) and Zynq
#    UltraScale+ MPSoC "DC and AC Switching Characteristics" (DS925; Tcko, Tdick at -1 and -2),
#    on the slow side; not checked against the data sheets here (assumptions until calibrated);
#  * net: an assumption, not a data-sheet figure (the data sheets give no routing delays): a
#    typical short route between neighbouring slices, larger on the slower 7-series fabric;
#  * uncertainty: an assumption for a clock from the PS or an MMCM (jitter plus skew);
#  * cell_scale: an assumption, the ratio of the UltraScale+ to the 7-series -1 logic delays
#    the two data sheets give (LUT and carry switching characteristics), rounded up.
DELAY_MODELS = {
    "xc7-1": DelayModel("xc7-1", tco=0.50, setup=0.10, uncertainty=0.20, net=0.50, cell_scale=1.0,
                        source="DS187 (Zynq-7000, -1) Tcko / Tdick as estimated; net, uncertainty assumed"),
    "xcup-1": DelayModel("xcup-1", tco=0.40, setup=0.10, uncertainty=0.15, net=0.40, cell_scale=0.8,
                         source="DS925 (Zynq UltraScale+, -1) Tcko / Tdick as estimated; net, uncertainty, scale assumed"),
    "xcup-2": DelayModel("xcup-2", tco=0.35, setup=0.08, uncertainty=0.15, net=0.35, cell_scale=0.7,
                         source="DS925 (Zynq UltraScale+, -2) Tcko / Tdick as estimated; net, uncertainty, scale assumed"),
}
# Modules and kernels a combinational ready path passes through: LUT levels each (the ready of a
# kernel whose input ready follows its output ready: out_ready or not holding a word, one LUT;
# a fork's: the AND of its readers' readies, one LUT; where the path ends, the enables of the
# writer's registers, one more LUT).
READY_LUT_LEVELS = 1
# Input ports of dedicated connections (carry chain, DSP cascade, wide multiplexers): no hop
DEDICATED_PORTS = {"CI", "CIN", "PCIN", "ACIN", "BCIN", "CARRYCASCIN", "MULTSIGNIN"}
CLOCK_PORTS = {"C", "CLK", "CLKARDCLK", "CLKBWRCLK", "WCLK"}


class TimingError(RuntimeError):
    """Yosys is missing or its timing report could not be read."""


def delay_model(board=None, family: str | None = None) -> DelayModel:
    """The delay model of a board (its family and the speed grade in its part name), or of a
    Yosys family name ("xc7", "xcup": speed grades -1 and -2)."""
    if board is not None:
        m = re.search(r"-(\d)(?:LV|[a-zA-Z]*)?(?:-[a-z])?$", board.part)
        grade = m.group(1) if m else "1"
        fam = "xc7" if board.family == "zynq" else "xcup"
        return DELAY_MODELS.get(f"{fam}-{grade}", DELAY_MODELS[f"{fam}-1"])
    return DELAY_MODELS["xcup-2" if family == "xcup" else "xc7-1"]


def sta_script(top: str) -> str:
    """Map to 7-series cells (no clock buffer: the clock arrives at time 0), then time the
    netlist alone against the cell library read with its specify blocks (the library synthesis
    loaded has none, so the netlist is written out and read back into a fresh design)."""
    return (f"read_slang --threads 1 dut.sv --top {top}; synth_xilinx -family xc7 -top {top} -noiopad -noclkbuf; "
            f"flatten; select {top}; write_json -selected net.json; design -reset; "
            "read_verilog -lib -specify +/xilinx/cells_sim.v; read_json net.json; tee -q -o sta.txt sta")


_END = re.compile(r"^\s*(-?\d+) (.+) \((\w+)\.([\w\[\]]+)\)$")
_STEP = re.compile(r"^\s*(-?\d+) (.+) \((\w+)\.([\w\[\]]+)->([\w\[\]]+)\)$")
_OUT = re.compile(r"^\s*(-?\d+) \(<primary output>\)$")
_IN = re.compile(r"^\s*(-?\d+)\s+(.+) \(<primary input>\)$")
_UNKNOWN = re.compile(r"^\s*(-?\d+) \(<unknown>\)$")


def parse_sta(text: str) -> dict | None:
    """The critical path of a Yosys ``sta`` report: {ps (its arrival, the endpoint's required
    time included), start (the module input it begins at), end: {cell, type, port} or None for
    a module output, steps: [{arrival, cell, type, src, dst}] from the start}.  None where the
    module has no timed path."""
    lines = text.splitlines()
    try:
        i = next(k for k, ln in enumerate(lines) if ln.startswith("Latest arrival time"))
    except StopIteration:
        if "No timing paths found" in text:
            return None
        raise TimingError(f"no critical path in the sta report:\n{text[-2000:]}") from None
    ps = int(lines[i].rsplit(" ", 1)[1].rstrip(":"))
    end, steps, start = None, [], None
    for ln in lines[i + 1:]:
        if not ln.strip() or ln.startswith("Arrival histogram"):
            break
        if m := _STEP.match(ln):
            steps.append(dict(arrival=int(m[1]), cell=m[2], type=m[3], src=m[4], dst=m[5]))
        elif _OUT.match(ln):
            end = None
        elif _UNKNOWN.match(ln):
            end = dict(cell="", type="net", port="")      # a net that drives no timed input
        elif m := _IN.match(ln):
            start = m[2].strip()
        elif not steps and (m := _END.match(ln)):
            end = dict(cell=m[2], type=m[3], port=m[4])
    if start is None or not steps:
        raise TimingError(f"unreadable sta path:\n{chr(10).join(lines[i:i + 40])}")
    return dict(ps=ps, start=start, end=end, steps=steps[::-1])


def _dedicated(src: dict | None, dst_type: str, dst_port: str) -> bool:
    """A connection on dedicated wires: carry chain, DSP cascade, LUT into its slice's carry or
    wide multiplexer."""
    base = re.sub(r"\[\d+\]$", "", dst_port)
    if base in DEDICATED_PORTS or dst_type.startswith("MUXF"):
        return True
    return bool(src and src["type"].startswith("LUT") and dst_type.startswith("CARRY") and base in ("S", "DI"))


def path_estimate(path: dict, model: DelayModel) -> dict:
    """The routing model on a parsed sta path: {cell_ns, cells, nets, tco_ns, setup_ns, net_ns,
    uncertainty_ns, total_ns, fmax_mhz, start, end, cell_types}."""
    steps, end = path["steps"], path["end"]
    from_register = steps[0]["src"] in CLOCK_PORTS
    nets = 0
    if not from_register and not _dedicated(None, steps[0]["type"], steps[0]["src"]):
        nets += 1                           # module input -> first cell
    for a, b in zip(steps, steps[1:]):
        nets += not _dedicated(a, b["type"], b["src"])
    if end is None or not _dedicated(steps[-1], end["type"], end["port"]):
        nets += 1                           # last cell -> endpoint
    tco = 0.0 if from_register else model.tco
    # a module output, a flip-flop's D, or a net sta found no endpoint after (counted as a register)
    setup = model.setup if end is None or end["type"] == "net" or (end["type"].startswith("FD") and end["port"] == "D") \
        else 0.0
    cell_ns = path["ps"] / 1000 * model.cell_scale
    total = cell_ns + tco + nets * model.net + setup + model.uncertainty
    first = steps[0]
    return dict(cell_ns=round(cell_ns, 4), cells=len(steps), nets=nets, tco_ns=tco, net_ns=round(nets * model.net, 4),
                setup_ns=setup, uncertainty_ns=model.uncertainty, total_ns=round(total, 4),
                fmax_mhz=round(1000 / total, 1),
                start=f"{first['cell']} ({first['type']}.{first['src']})" if from_register else f"input {path['start']}",
                end=(f"output {path.get('out') or ''}".strip() if end is None else
                     f"net {path.get('out') or ''} (drives no timed input)" if end["type"] == "net" else
                     f"{end['cell']} ({end['type']}.{end['port']})"),
                cell_types=[s["type"] for s in steps])


def sta_path(sv_source: str, top: str) -> dict | None:
    """Yosys' critical path of one module (:func:`parse_sta`), cached under build/timing/."""
    from .yosys import YosysError, run_yosys
    script = sta_script(top)
    key = hashlib.sha256("\n".join([sv_source, script]).encode()).hexdigest()[:16]
    TIMING_CACHE.mkdir(parents=True, exist_ok=True)
    hit = TIMING_CACHE / f"{top[:60]}-{key}.json"
    if hit.exists():
        return json.loads(hit.read_text())["path"]
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "dut.sv").write_text(sv_source)
        try:
            res = run_yosys(script, d)
        except YosysError as exc:
            raise TimingError(str(exc)) from None
        rep = Path(d) / "sta.txt"
        if res.returncode != 0 or not rep.exists():
            raise TimingError(f"yosys sta failed for {top}:\n{(res.stdout + res.stderr)[-4000:]}")
        text = rep.read_text()
    path = parse_sta(text)
    if path is not None and (path["end"] is None or path["end"]["type"] == "net"):
        m = re.search(r"\(<(?:primary output|unknown)>\)\n(?:Warning: .*\n)?\s+(\S.*)\n", text)
        path["out"] = m[1].strip() if m else ""
    cache.write_text(hit, json.dumps(dict(path=path), indent=1))
    return path


def module_timing(sv_source: str, top: str, family: str = "xc7", model: DelayModel | None = None) -> dict:
    """The critical path of one module: Yosys' cell delay plus the routing model of ``family``
    ("xc7": 7-series -1, "xcup": UltraScale+ -2; or ``model``).  Returns path_estimate's dict
    (total_ns, fmax_mhz, cell_ns, cells and nets on the path, start and end points) with the
    delay model's name; a module without a timed path (wires only) gets total_ns 0."""
    model = model or delay_model(family=family)
    path = sta_path(sv_source, top)
    if path is None:
        return dict(cell_ns=0.0, cells=0, nets=0, tco_ns=0.0, net_ns=0.0, setup_ns=0.0, uncertainty_ns=0.0,
                    total_ns=0.0, fmax_mhz=None, start="", end="", cell_types=[], delay_model=model.name)
    return dict(path_estimate(path, model), delay_model=model.name)


def _label(p) -> str:
    if p.kind == "node":
        return p.comment.split(" (")[0]
    return f"{p.kind} {p.comment}".strip()


def passes_ready(p, registered=frozenset()) -> bool:
    """Whether a process' input ready follows its output ready combinationally (as
    hw.rtl_top.direct_links reasons)."""
    return p.kind in ("fanout", "refold") or (p.kind == "node" and p.params["code"].name not in registered)


def ready_paths(d, registered=frozenset()) -> list:
    """The combinational ready paths through direct links (channels of depth 0) of the design
    ``d``: every maximal chain [writer, reader, reader's reader, ...] along which the ready runs
    from where it is a register's (a FIFO's, or a kernel in ``registered``) back to the writer
    whose registers it enables.  Returns lists of process labels, upstream first."""
    chan = {c.var: c for c in d.channels}
    reader = {v: p for p in d.processes for v in p.ins}
    writer = {v: p for p in d.processes for v in p.outs}

    def down(p) -> list:
        """Chains that begin at p's output ready and go downstream through direct links."""
        out = []
        for v in p.outs:
            q = reader.get(v)
            if q is None or chan[v].depth != 0 or q.kind in ("axis_in", "axis_out"):
                continue
            if passes_ready(q, registered):
                out += [[q] + rest for rest in down(q)] or [[q]]
            else:
                out.append([q])
        return out

    paths = []
    for p in d.processes:
        if p.kind in ("axis_in", "axis_out"):
            continue
        fed_directly = any(chan[v].depth == 0 and writer.get(v) is not None and writer[v].kind != "axis_in"
                           for v in p.ins)
        if fed_directly and passes_ready(p, registered):
            continue                          # a longer path goes on upstream of p
        paths += [[p] + rest for rest in down(p)]
    return [[_label(q) for q in path] for path in paths]


def ready_path_estimate(n: int, model: DelayModel) -> dict:
    """A ready path through ``n`` modules: the ready register's clock-to-out, READY_LUT_LEVELS
    LUTs and a routing hop per module, one more hop into the registers' enables where it ends,
    setup and uncertainty."""
    luts, nets = n * READY_LUT_LEVELS, n + 1
    total = model.tco + luts * model.lut + nets * model.net + model.setup + model.uncertainty
    return dict(modules=n, luts=luts, nets=nets, total_ns=round(total, 4), fmax_mhz=round(1000 / total, 1))


def design_timing(graph, image_shape, model: str = "model", d=None, clock_mhz: float = 100.0, family: str = "xc7",
                  jobs: int = 2, delay: DelayModel | None = None, progress: bool = True) -> dict:
    """Timing estimate of the stitched top of ``graph`` at ``clock_mhz``: ``modules`` (one row per
    distinct module, hw.yosys.parts_of: kind, name, op, module, instances and module_timing's
    figures, slowest first), ``ready_paths`` (the cross-module ready chains, slowest first),
    ``paths`` (both, the 10 slowest), ``worst_ns``, ``worst_module``, ``worst_path``,
    ``clock_ns``, ``meets`` (worst_ns <= clock_ns), ``fmax_mhz``."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm import tqdm

    from .ops import op_of
    from .rtl_top import rtl_design
    from .yosys import parts_of
    t0 = time.time()
    dm = delay or delay_model(family=family)
    d = d or rtl_design(graph, image_shape, model)
    parts = parts_of(graph, d)
    order = sorted(range(len(parts)), key=lambda i: -len(parts[i].kernel.source))
    got: dict = {}
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futs = {pool.submit(module_timing, parts[i].kernel.source, parts[i].kernel.module, family, dm): i
                for i in order}
        with tqdm(total=len(parts), desc="yosys sta", unit="module", disable=not progress) as bar:
            for f in as_completed(futs):
                got[futs[f]] = f.result()
                bar.update(1)
    clock_ns = 1000 / clock_mhz
    rows = [dict(kind=p.kind, name=p.label, op=p.op, module=p.kernel.module, instances=p.instances, **got[i],
                 meets=got[i]["total_ns"] <= clock_ns) for i, p in enumerate(parts)]
    rows.sort(key=lambda r: -r["total_ns"])
    registered = frozenset(op.name for op in map(op_of, graph.nodes) if op.ready_registered)
    chains = []
    for labels in ready_paths(d, registered):
        e = ready_path_estimate(len(labels), dm)
        chains.append(dict(through=labels, **e, meets=e["total_ns"] <= clock_ns))
    chains.sort(key=lambda r: -r["total_ns"])
    paths = [dict(kind="module", name=r["name"], module=r["module"], total_ns=r["total_ns"], start=r["start"],
                  end=r["end"], cells=r["cells"], nets=r["nets"]) for r in rows]
    paths += [dict(kind="ready chain", name=" -> ".join(c["through"]), module="", total_ns=c["total_ns"],
                   start=f"ready into {c['through'][-1]}", end=f"register enables of {c['through'][0]}",
                   cells=c["luts"], nets=c["nets"]) for c in chains]
    paths.sort(key=lambda r: -r["total_ns"])
    worst = paths[0] if paths else dict(total_ns=0.0, name="", kind="")
    worst_mod = rows[0] if rows else dict(name="", total_ns=0.0)
    return dict(family=family, delay_model=asdict(dm), clock_mhz=clock_mhz, clock_ns=round(clock_ns, 4),
                worst_ns=worst["total_ns"], worst_path=worst["name"], worst_kind=worst["kind"],
                worst_module=worst_mod["name"], worst_module_ns=worst_mod["total_ns"],
                meets=worst["total_ns"] <= clock_ns,
                fmax_mhz=round(1000 / worst["total_ns"], 1) if worst["total_ns"] else None,
                modules=rows, ready_paths=chains, paths=paths[:10], seconds=round(time.time() - t0, 1))
