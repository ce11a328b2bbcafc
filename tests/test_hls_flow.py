"""`make hls` (flows/hls.py) end to end on the shipped model, and its error paths.

The whole dataflow top of the shipped PYNQ-Z2 design is compiled with its testbench
(the nodes' objects come from the per-node C simulation test's cache) and must give
the golden logits on 200 Fashion-MNIST test images; the written project must hold
everything Vitis HLS and Vivado need.
"""
import json

import numpy as np
import pytest

from flows import hls
from flows.tcl import tcl_syntax_ok
from tests.conftest import CKPT


def _run(capsys, *args):
    rc = hls.main([*map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_unknown_board_lists_the_known_ones(capsys, tmp_path):
    rc, _, err = _run(capsys, "--board", "pynq-z3", "--ckpt", CKPT, "--out", tmp_path)
    assert rc == 2
    for b in ("pynq-z2", "pynq-z1", "ultra96-v2", "zcu104", "kv260"):
        assert b in err
    assert not any(tmp_path.iterdir())


def test_folding_that_does_not_divide_names_node_and_legal_values(capsys, tmp_path, shipped_intnet_file):
    fold = tmp_path / "folding.json"
    fold.write_text(json.dumps({"stages.0.0.mlp.fc1.linear": {"PE": 3}}))
    out = tmp_path / "proj"
    rc, _, err = _run(capsys, "--ckpt", CKPT, "--intnet", shipped_intnet_file, "--folding", fold, "--out", out)
    assert rc == 2
    assert "stages.0.0.mlp.fc1.linear" in err and "PE=3" in err and "1, 2, 4, 8, 16, 32, 64, 128" in err
    assert not (out / "src").exists()


def test_design_over_the_device_is_reported_before_any_code(capsys, tmp_path, shipped_intnet_file,
                                                            shipped_pynq_graph):
    # every matrix unit fully parallel: far beyond the xc7z020's LUTs
    from hw.execute import stream_shapes
    from hw.ops import io_of, op_of
    g = shipped_pynq_graph
    shapes = stream_shapes(g, 1, (32, 32, 1))
    fold = {n.name: op_of(n).fold_dims(io_of(g, n, shapes)) for n in g.nodes if op_of(n).binary_weights}
    path = tmp_path / "folding.json"
    path.write_text(json.dumps(fold))
    out = tmp_path / "proj"
    rc, _, err = _run(capsys, "--ckpt", CKPT, "--intnet", shipped_intnet_file, "--folding", path, "--out", out)
    assert rc == 2
    assert "over pynq-z2's resources" in err and "of   53,200" in err and "<-- over" in err
    assert not (out / "src").exists() and not (out / "vitis_hls.tcl").exists()


def test_make_hls_pynq_z2_csim_equals_golden_on_200_images(capsys, tmp_path, shipped_intnet_file, shipped,
                                                           shipped_pynq_graph):
    from hw.execute import run
    out = tmp_path / "proj"
    rc, stdout, _ = _run(capsys, "--ckpt", CKPT, "--intnet", shipped_intnet_file, "--csim-images", 200, "--out", out)
    assert rc == 0, stdout
    rep = json.loads((out / "report.json").read_text())
    assert rep["csim"]["images"] == 200 and rep["csim"]["equal"] and rep["csim"]["mismatched_images"] == 0
    # the testbench's logits are the golden model's, independently recomputed here
    images = shipped[2].images[:200].numpy().transpose(0, 2, 3, 1)
    assert np.array_equal(np.load(out / "csim" / "logits.npy"), run(shipped_pynq_graph, images))
    # the project: one source per node + the top, its header, the testbench and its data, the scripts
    assert len(list((out / "src").glob("node_*.cpp"))) == 168
    for f in ("src/bhvit_top.cpp", "src/bhvit_top.hpp", "src/bhvit.hpp", "tb/bhvit_top_tb.cpp", "tb/images.npy",
              "tb/expected.npy", "folding.json", "report.md", "report.png"):
        assert (out / f).exists(), f
    for script in ("vitis_hls.tcl", "vivado.tcl"):
        ok, msg = tcl_syntax_ok((out / script).read_text())
        assert ok, msg
    assert "xc7z020clg400-1" in (out / "vitis_hls.tcl").read_text()
    top = (out / "src/bhvit_top.cpp").read_text()
    assert "#pragma HLS DATAFLOW" in top and "axis port=in_stream" in top and "s_axilite port=images" in top
    # without the vendor tools the report says so and what to run
    assert rep["vendor"] == {"vitis_hls": "not on PATH: skipped", "vivado": "not on PATH: skipped"}
    assert "vitis_hls -f vitis_hls.tcl" in stdout
    # where the fabric goes by the estimate: the kinds add up to the estimate's LUTs, FIFOs included
    fab, est = rep["fabric"], rep["estimate"]
    assert sum(v["luts"] for v in fab["by_op_kind"].values()) == est["used"]["luts"] == fab["luts"]
    assert fab["by_op_kind"]["FIFOs"]["luts"] == est["fifo_luts"] and fab["by_op_kind"]["Affine"]["nodes"] == 53
    ln = fab["lanes"]
    assert ln == est["cost"]["lanes"] and 0 < ln["utilisation"] < 1
    assert ln["utilisation"] == ln["binary_macs"] / (ln["lanes"] * est["cost"]["cycles_per_image"])
    assert "## Where the fabric goes" in (out / "report.md").read_text() and "XNOR lanes busy" in stdout
    # the folding it wrote is re-usable as is (same sources: compiled objects are reused)
    rc, stdout, _ = _run(capsys, "--ckpt", CKPT, "--intnet", shipped_intnet_file, "--folding", out / "folding.json",
                         "--csim-images", 3, "--out", tmp_path / "again")
    assert rc == 0, stdout
    assert (tmp_path / "again/src/bhvit_top.cpp").read_text() == top


def test_vendor_tools_on_path_are_run_in_order(tmp_path, monkeypatch):
    """With (stand-in) vitis_hls and vivado on PATH, run_vendor runs the HLS script, then the
    Vivado script, in the project folder; a failing vitis_hls stops before vivado."""
    import os
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("vitis_hls", "vivado"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $* in $(pwd)" >> {log}\nexit ${{FAIL_{tool.upper()}:-0}}\n')
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proj = tmp_path / "proj"
    proj.mkdir()
    assert hls.run_vendor(proj, print) == {"vitis_hls": "ok", "vivado": "ok"}
    assert log.read_text().splitlines() == [f"vitis_hls -f vitis_hls.tcl in {proj}",
                                            f"vivado -mode batch -source vivado.tcl in {proj}"]
    monkeypatch.setenv("FAIL_VITIS_HLS", "1")
    res = hls.run_vendor(proj, print)
    assert res["vitis_hls"].startswith("failed (exit 1") and res["vivado"].startswith("skipped")


def test_fold_for_board_trades_map_banks_for_block_ram(shipped_net):
    """The lowered graph with two banks everywhere fits the xc7z020 (the fused shift units hold
    one map per block, not six) once some Affine / RPReLU tables stay in LUTs; on a part with 110
    BRAM36 every table goes to LUTs and fold_for_board also drops map buffers to one bank (those
    that keep the target first) until the estimate, FIFOs included, fits."""
    import dataclasses

    from flows.boards import get_board
    from flows.common import DEFAULT_MAX_UTIL, estimate, fits, fold_for_board, tables_back_to_bram
    from hw.cost import fold_for_target, node_cost
    from hw.execute import stream_shapes
    from hw.hls_top import design
    from hw.ops import op_of
    from hw.ops.fixed_point import TABLE_BRAM
    from hw.passes import lower
    shape = (32, 32, 1)
    pynq = get_board("pynq-z2")
    # less block RAM, LUTs to spare: with all its tables in LUTs the design would be over the
    # xc7z020's LUTs by the calibrated estimate, and this test is about the block RAM
    small = dataclasses.replace(pynq, name="pynq-z2-110", bram36=110, luts=80_000)
    big = lower(shipped_net.graph)
    fb = fold_for_board(big, shape, pynq, 10_000, DEFAULT_MAX_UTIL)
    assert fb["one_bank"] == [] and not fb["relaxed"]
    assert all(n.attrs["BANKS"] == 2 for n in big.nodes if op_of(n).banked)
    in_luts = {n.name for n in big.nodes if n.attrs.get(TABLE_BRAM) == 0}
    in_bram = [n for n in big.nodes if op_of(n).table_placement and n.name not in in_luts
               and node_cost(big, n, stream_shapes(big, 1, shape))["bram36"] > 0]
    assert in_luts == set(fb["tables_in_luts"]) and in_luts and in_bram
    # each table kept in LUTs was needed: with the last one back in block RAM the estimate is over
    last = big.nodes[[n.name for n in big.nodes].index(fb["tables_in_luts"][-1])]
    last.attrs.pop(TABLE_BRAM)
    assert estimate(big, shape, pynq, design(big, shape))["utilisation"]["bram36"] > DEFAULT_MAX_UTIL
    last.attrs[TABLE_BRAM] = 0
    # with 12 BRAM36 less of FIFOs (make sim's sized depths) tables_back_to_bram takes some back
    d = design(big, shape)
    for c in sorted(d.channels, key=lambda c: -c.depth * c.bits)[:3]:
        c.depth = 2
    back = tables_back_to_bram(big, shape, pynq, d, DEFAULT_MAX_UTIL)
    assert back and set(back) <= in_luts and all(TABLE_BRAM not in big.node(n).attrs for n in back)
    assert fits(estimate(big, shape, pynq, d), DEFAULT_MAX_UTIL)
    g = lower(shipped_net.graph)
    fold_for_target(g, shape, 10_000)
    assert not fits(estimate(g, shape, small, design(g, shape)), DEFAULT_MAX_UTIL)
    fb = fold_for_board(g, shape, small, 10_000, DEFAULT_MAX_UTIL)
    one = {n.name for n in g.nodes if op_of(n).banked and n.attrs["BANKS"] == 1}
    assert one and one == set(fb["one_bank"]) and not fb["relaxed"]
    est = estimate(g, shape, small, design(g, shape))
    assert fits(est, DEFAULT_MAX_UTIL) and est["used"] == fb["estimate"]["used"]
    # every one-bank buffer was needed: with the last one back at two banks it no longer fits
    g.nodes[[n.name for n in g.nodes].index(fb["one_bank"][-1])].attrs["BANKS"] = 2
    assert not fits(estimate(g, shape, small, design(g, shape)), DEFAULT_MAX_UTIL)
