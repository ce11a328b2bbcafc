"""`make bitstream` (flows/bitstream.py): which vendor scripts run, in which order, and the
deploy bundle; the RTL backend's IP-packaging script; failing fast without the vendor tools.

No vendor tool runs here.  Stand-ins for ``vitis_hls`` / ``vivado`` on PATH record their
arguments and working directory; the stand-in vivado, when given vivado.tcl, leaves files where
the real script copies the overlay (a test double: the tests check the flow's plumbing, not a
bitstream).  The generated scripts go through tclsh (syntax, and a run with every vendor
command recorded: flows.tcl.run_with_stub).
"""
import hashlib
import json
import os
import shutil
import time

import numpy as np
import pytest

from flows import bitstream
from flows.boards import BOARDS, get_board
from flows.rtl_ip import IP, render_axi_top, render_package_tcl
from flows.tcl import render_vivado_tcl, run_with_stub, tcl_syntax_ok

needs_tclsh = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh is not installed")
MODEL = "bhvit_pynq_fmnist"
CKPT = "checkpoints/bhvit_pynq_fmnist/model.pt"


def stand_ins(tmp_path, monkeypatch, fail=None, no_outputs=False):
    """vitis_hls and vivado that append "<tool> <args> in <cwd>" to calls.log; vivado with
    vivado.tcl writes bitstream/<model>.bit and .hwh (unless no_outputs); ``fail``: that tool exits 1."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("vitis_hls", "vivado"):
        make = ("" if tool != "vivado" or no_outputs else
                f'case "$*" in *vivado.tcl*) mkdir -p bitstream; printf bit-{tool} > bitstream/{MODEL}.bit; '
                f'printf "<hwh/>" > bitstream/{MODEL}.hwh; printf \'{VIVADO_TIMING}\' > bitstream/timing_vivado.json; '
                f'printf "summary" > bitstream/timing_summary.rpt;; esac\n')
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $* in $(pwd)" >> {log}\n{make}'
                                    f'exit {1 if fail == tool else 0}\n')
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


VIVADO_TIMING = json.dumps(dict(clock_mhz=100, wns_ns=-0.25, paths=[dict(slack_ns=-0.25, start="a/C", end="b/D")]))


def run_flow(capsys, *args):
    rc = bitstream.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


# The plumbing tests build for the ZCU104, which the design fits under any folding the cost model
# may pick (the PYNQ-Z2's BRAM is tight); every board's part and preset is checked below.
BOARD = get_board("zcu104")


def flow_args(tmp_path, intnet, backend="hls", *more):
    return ["--board", BOARD.name, "--backend", backend, "--ckpt", CKPT, "--intnet", intnet,
            "--out", tmp_path / "proj", "--bundle", tmp_path / "bundle", "--sample-images", 4, *more]


def test_without_vivado_fails_fast_with_the_exact_commands(capsys, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))                # no vivado, no vitis_hls
    for backend, tools in (("hls", "vitis_hls and vivado"), ("rtl", "vivado")):
        t0 = time.time()
        rc, out, err = run_flow(capsys, "--board", "pynq-z2", "--backend", backend, "--ckpt", CKPT,
                                "--bundle", tmp_path / "bundle")
        assert rc == 2 and time.time() - t0 < 5
        assert f"needs {tools} on PATH" in err
        for tool, args, _ in bitstream.vendor_steps(backend):
            assert " ".join([tool, *args]) in err
        assert f"cd build/{MODEL}/{backend}_pynq-z2" in err and "--bundle-only" in err
        assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("args, words", [
    (["--board", "pynq-z9"], "unknown board"), (["--backend", "vhdl"], "unknown backend"),
    (["--bit", "x.bit"], "--bit and --hwh go together"), (["--sample-images", "0"], "at least 1")])
def test_bad_options_exit_2(capsys, args, words):
    rc, _, err = run_flow(capsys, "--ckpt", CKPT, "--bundle-only", *args)
    assert rc == 2 and words in err


@needs_tclsh
def test_hls_backend_runs_vitis_then_vivado_and_bundles_the_overlay(capsys, tmp_path, monkeypatch,
                                                                    shipped_intnet_file):
    log = stand_ins(tmp_path, monkeypatch)
    rc, out, err = run_flow(capsys, *flow_args(tmp_path, shipped_intnet_file))
    assert rc == 0, out + err
    proj, bundle = tmp_path / "proj", tmp_path / "bundle"
    assert log.read_text().splitlines() == [f"vitis_hls -f vitis_hls.tcl in {proj}",
                                            f"vivado -mode batch -source vivado.tcl in {proj}"]
    # the scripts the tools were given: valid Tcl; Vitis HLS synthesizes and exports (C simulation is make hls')
    for script in ("vitis_hls.tcl", "vivado.tcl"):
        ok, msg = tcl_syntax_ok((proj / script).read_text())
        assert ok, f"{script}: {msg}"
    hls = run_with_stub((proj / "vitis_hls.tcl").read_text(), tmp_path / "stub_hls")
    assert [c for c in hls.commands if c.endswith("_design")] == ["csynth_design", "export_design"]
    assert hls.args_of("set_part") == [(BOARD.part,)]
    viv = run_with_stub((proj / "vivado.tcl").read_text(), tmp_path / "stub_viv",
                        returns={"get_board_parts": BOARD.board_part, "get_ipdefs": "x"})
    assert ("-force", MODEL, "bitstream/vivado", "-part", BOARD.part) in viv.args_of("create_project")
    assert ("board_part", BOARD.board_part) == viv.args_of("set_property")[0][:2]
    # the bundle: the overlay pair, the driver and its parameters, the sample, the manifest
    assert (bundle / f"{MODEL}.bit").read_bytes() == b"bit-vivado"
    assert (bundle / f"{MODEL}.hwh").read_text() == "<hwh/>"
    params = json.loads((bundle / "bhvit_driver/params.json").read_text())
    assert params["input"] == dict(params["input"], shape=[32, 32, 1], source_shape=[28, 28, 1], bits=8,
                                   signed=False, axis_bits=64)
    assert params["output"]["classes"] == 10 and params["output"]["axis_bits"] == 32
    assert params["board"] == BOARD.name and params["part"] == BOARD.part
    assert params["bitfile"] == f"{MODEL}.bit" and params["control"] == {"ap_ctrl": 0, "images": 16}
    assert params["classes"][9] == "Ankle boot"
    x, want = np.load(bundle / "sample_input.npy"), np.load(bundle / "sample_expected.npy")
    assert x.shape == (4, 28, 28, 1) and x.dtype == np.uint8 and want.shape == (4, 10)
    from hw.execute import run
    from hw.intnet import IntNet
    from hw.export import apply_folding_file
    from hw.passes import lower
    g = lower(IntNet.load(shipped_intnet_file).graph)
    apply_folding_file(g, bundle / "folding.json", "test")
    assert np.array_equal(run(g, np.pad(x.astype(np.int64), ((0, 0), (2, 2), (2, 2), (0, 0)))), want)
    man = json.loads((bundle / "manifest.json").read_text())
    assert man["bitstream"] and man["backend"] == "hls"
    for rel, digest in man["files"].items():
        assert hashlib.sha256((bundle / rel).read_bytes()).hexdigest() == digest
    assert "bhvit_driver/accelerator.py" in man["files"] and "bhvit_driver/__main__.py" in man["files"]
    assert not list(tmp_path.glob(".bundle.*"))           # no temporary folder left
    # the timing record: Vivado's post-route report as the script wrote it; no estimate without make sim's report
    assert json.loads((bundle / "timing_vivado.json").read_text()) == json.loads(VIVADO_TIMING)
    assert (bundle / "timing_summary.rpt").read_text() == "summary" and not (bundle / "timing_estimate.json").exists()
    assert "no timing estimate in the bundle" in out and "make sim BOARD=zcu104" in out


def test_bundle_holds_make_sims_timing_estimate_of_the_same_model_and_board(capsys, tmp_path, monkeypatch,
                                                                          shipped_intnet_file):
    stand_ins(tmp_path, monkeypatch)
    est = dict(clock_mhz=100.0, clock_ns=10.0, worst_ns=8.25, worst_path="stem.conv", worst_kind="module", meets=True)
    report = tmp_path / "report.json"
    report.write_text(json.dumps(dict(model=MODEL, board=dict(name=BOARD.name), checkpoint=CKPT, timing=est)))
    rc, out, err = run_flow(capsys, *flow_args(tmp_path, shipped_intnet_file), "--timing-estimate", report)
    assert rc == 0, out + err
    got = json.loads((tmp_path / "bundle" / "timing_estimate.json").read_text())
    assert got == dict(est, source=str(report), checkpoint=CKPT) and "worst path 8.25 ns" in out
    # another board's report is not this design's estimate
    report.write_text(json.dumps(dict(model=MODEL, board=dict(name="pynq-z2"), timing=est)))
    rc, out, err = run_flow(capsys, *flow_args(tmp_path, shipped_intnet_file), "--timing-estimate", report)
    assert rc == 0 and not (tmp_path / "bundle" / "timing_estimate.json").exists()
    rc, out, err = run_flow(capsys, *flow_args(tmp_path, shipped_intnet_file), "--timing-estimate", tmp_path / "no.json")
    assert rc == 2 and "no.json: no such file" in err


@pytest.mark.parametrize("fail, no_outputs, calls, words", [
    ("vitis_hls", False, ["vitis_hls"], "vitis_hls -f vitis_hls.tcl failed (exit 1)"),
    (None, True, ["vitis_hls", "vivado"], "left no"),
])
def test_a_failed_vendor_step_stops_the_flow(capsys, tmp_path, monkeypatch, shipped_intnet_file, fail, no_outputs,
                                             calls, words):
    log = stand_ins(tmp_path, monkeypatch, fail=fail, no_outputs=no_outputs)
    rc, out, err = run_flow(capsys, *flow_args(tmp_path, shipped_intnet_file))
    assert rc == 1 and words in err
    assert [line.split()[0] for line in log.read_text().splitlines()] == calls
    assert not (tmp_path / "bundle").exists()


@needs_tclsh
def test_rtl_backend_packages_the_ip_then_builds_the_overlay(capsys, tmp_path, monkeypatch, shipped_intnet_file):
    log = stand_ins(tmp_path, monkeypatch)
    rc, out, err = run_flow(capsys, *flow_args(tmp_path, shipped_intnet_file, "rtl"))
    assert rc == 0, out + err
    proj = tmp_path / "proj"
    assert log.read_text().splitlines() == [f"vivado -mode batch -source package_ip.tcl in {proj}",
                                            f"vivado -mode batch -source vivado.tcl in {proj}"]
    pkg = (proj / "package_ip.tcl").read_text()
    ok, msg = tcl_syntax_ok(pkg)
    assert ok, msg
    srcs = sorted(p.name for p in (proj / "src").glob("*.sv"))
    assert "bhvit_axi_top.sv" in srcs and len(srcs) == 2
    run = run_with_stub(pkg, tmp_path / "stub_pkg", returns={"ipx::get_bus_interfaces": "busif"})
    order = [c for c in run.commands if c in ("create_project", "add_files", "ipx::package_project", "ipx::save_core")]
    assert order == ["create_project", "add_files", "ipx::package_project", "ipx::save_core"]
    assert run.args_of("ipx::package_project")[0][:2] == ("-root_dir", "ip")
    viv = (proj / "vivado.tcl").read_text()
    assert "set ip_vlnv     bhvit.org:rtl:bhvit_top:1.0" in viv and "set ip_repo     ip" in viv
    assert json.loads((tmp_path / "bundle/bhvit_driver/params.json").read_text())["backend"] == "rtl"


@needs_tclsh
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_rtl_packaging_and_overlay_scripts_for_every_board(name, tmp_path):
    """package_ip.tcl: the board's part; vivado.tcl for the packaged IP: the board's preset."""
    board = get_board(name)
    pkg = render_package_tcl(board, ["src/top.sv", "src/bhvit_axi_top.sv"])
    ok, msg = tcl_syntax_ok(pkg)
    assert ok, msg
    run = run_with_stub(pkg, tmp_path / "pkg", returns={"ipx::get_bus_interfaces": "busif"})
    assert run.returncode == 0, run.stderr
    assert run.args_of("create_project")[0][-2:] == ("-part", board.part)
    fams = [a for a in run.args_of("set_property") if a[0] == "supported_families"]
    assert fams and board.family in fams[0][1]
    assert [a[1] for a in run.args_of("ipx::associate_bus_interfaces")] == ["in_stream", "out_stream", "s_axi_control"]
    missing = run_with_stub(pkg, tmp_path / "pkg2")          # the packager found no AXI interface
    assert missing.returncode != 0 and "did not find the interface in_stream" in missing.stderr
    viv = render_vivado_tcl(board, ip_repo="ip", ip_vlnv=":".join(IP.values()), ip_name="bhvit_top", design=MODEL,
                            in_bits=64, out_bits=32, out_dir="bitstream")
    r = run_with_stub(viv, tmp_path / "viv", returns={"get_board_parts": board.board_part, "get_ipdefs": "x"})
    assert ("board_part", board.board_part) == r.args_of("set_property")[0][:2]
    assert r.args_of("create_bd_cell")[0][-1] == "zynq_ps" and r.args_of("create_bd_cell")[0][3] == f"xilinx.com:ip:{board.ps_facts.ip}"


def test_axi_wrapper_lints_clean_with_verilator(tmp_path):
    """The RTL backend's AXI wrapper around a stand-in core with the stitched top's ports."""
    from types import SimpleNamespace
    from hw import rtlsim
    if not (rtlsim.VENV_BIN / "verilator").exists():
        pytest.skip("needs .venv/bin/verilator (make setup)")
    d = SimpleNamespace(in_bits=8, in_values=1024, in_fmt=dict(elems=2), out_axis_bits=32, out_bits=25,
                        out_signed=True, out_values=10, out_fmt=dict(elems=1))
    core = """module core_stub (input logic clk, input logic rst_n, input logic [15:0] in0_tdata,
    input logic in0_tvalid, output logic in0_tready, output logic [24:0] out_tdata, output logic out_tvalid,
    input logic out_tready);
    logic [24:0] acc;
    always_ff @(posedge clk) if (!rst_n) acc <= '0; else if (in0_tvalid && in0_tready) acc <= acc + 25'(in0_tdata);
    assign in0_tready = out_tready;
    assign out_tdata = acc;
    assign out_tvalid = in0_tvalid;
endmodule
"""
    src = tmp_path / "w.sv"
    src.write_text(core + render_axi_top("core_stub", d))
    import subprocess
    r = subprocess.run([rtlsim.verilator(), "--lint-only", "-Wall", "-Wno-DECLFILENAME", "--top-module", "bhvit_top", str(src)],
                       capture_output=True, text=True, env=rtlsim.tool_env())
    assert r.returncode == 0, r.stderr
