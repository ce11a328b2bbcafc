"""Board registry and the vendor Tcl scripts (Vitis HLS, Vivado), checked under tclsh.

No vendor tool runs here: the scripts are parsed by tclsh and executed with every vendor
command replaced by a recorder (flows.tcl.run_with_stub); the tests read back which commands
ran, in which order, with which arguments.
"""
import json
import shutil

import pytest

from flows.boards import BOARDS, DEFAULT_BOARD, UnknownBoardError, get_board
from flows.tcl import HLS_STEPS, render_vitis_hls_tcl, render_vivado_tcl, run_with_stub, tcl_syntax_ok, tcl_word

needs_tclsh = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh is not installed")
IP = dict(vendor="bhvit.org", library="hls", name="bhvit_top", version="1.0")
DESIGN = "bhvit_pynq_fmnist"
EXPECTED_PS = {"pynq-z2": "processing_system7", "pynq-z1": "processing_system7",
               "ultra96-v2": "zynq_ultra_ps_e", "zcu104": "zynq_ultra_ps_e", "kv260": "zynq_ultra_ps_e"}


def hls_script(board, steps=HLS_STEPS, **kw):
    args = dict(project="bhvit_hls", top="bhvit_top", sources=["src/top.cpp", "src/nodes.cpp"],
                include_dirs=["/opt/inc dir", "templates/hls"], tb_sources=["tb/main_tb.cpp"],
                tb_data=["tb/golden"], tb_argv="tb/golden 8", part=board.part,
                clock_period_ns=board.clock_period_ns, steps=list(steps), ip=IP)
    args.update(kw)
    return render_vitis_hls_tcl(**args)


def vivado_script(board, out_dir, **kw):
    args = dict(ip_repo="/work/hls/bhvit_hls/solution1/impl/ip", ip_vlnv="bhvit.org:hls:bhvit_top:1.0",
                ip_name="bhvit_top", design=DESIGN, in_bits=64, out_bits=32, out_dir=str(out_dir), jobs=4)
    args.update(kw)
    return render_vivado_tcl(board, **args)


def fake_vivado_outputs(out_dir, gen="gen"):
    """The files a finished Vivado run leaves in the project (default proj_dir = out_dir/vivado)."""
    proj = out_dir / "vivado"
    run = proj / f"{DESIGN}.runs" / "impl_1"
    run.mkdir(parents=True)
    (run / f"{DESIGN}_wrapper.bit").write_bytes(b"bitstream")
    handoff = proj / f"{DESIGN}.{gen}" / "sources_1" / "bd" / DESIGN / "hw_handoff"
    handoff.mkdir(parents=True)
    (handoff / f"{DESIGN}.hwh").write_text("<hwh/>")


def installed(board, **more):
    """Stub answers of a machine with the board files and the HLS IP installed, runs that succeed."""
    return {"get_board_parts": board.board_part, "get_ipdefs": "bhvit.org:hls:bhvit_top:1.0",
            "get_property PROGRESS": "100%", **more}


def props(dict_arg: str) -> dict:
    words = dict_arg.split()
    return dict(zip(words[::2], words[1::2]))


# ---- boards

def test_board_registry():
    assert list(BOARDS) == ["pynq-z2", "pynq-z1", "ultra96-v2", "zcu104", "kv260"]
    assert get_board().name == DEFAULT_BOARD == "pynq-z2"
    z2 = get_board("PYNQ_Z2")
    assert (z2.part, z2.ps, z2.family, z2.clock_mhz) == ("xc7z020clg400-1", "ps7", "zynq", 100)
    assert z2.resources == {"luts": 53_200, "ffs": 106_400, "bram36": 140, "dsps": 220, "uram": 0}
    assert get_board("zcu104").part == "xczu7ev-ffvc1156-2-e" and get_board("zcu104").uram == 96
    assert get_board("kv260").part == "xck26-sfvc784-2LV-c" and get_board("kv260").dsps == 1_248
    for b in BOARDS.values():
        assert b.ps == ("ps7" if b.family == "zynq" else "zynq_us")
        assert b.ps_facts.ip == EXPECTED_PS[b.name]
        assert (b.uram == 0) == (b.family == "zynq" or b.name == "ultra96-v2")
    assert get_board("pynq-z1").ps_facts.hp_slave == "S_AXI_HP0"
    assert get_board("kv260").ps_facts.hp_slave == "S_AXI_HP0_FPD"
    assert get_board("kv260").ps_facts.fclk == "pl_clk0" and z2.ps_facts.fclk == "FCLK_CLK0"


def test_unknown_board_lists_known_ones():
    with pytest.raises(UnknownBoardError) as e:
        get_board("arty-a7")
    assert isinstance(e.value, ValueError)
    assert "arty-a7" in str(e.value)
    for name in BOARDS:
        assert name in str(e.value)


# ---- syntax

@needs_tclsh
@pytest.mark.parametrize("name", list(BOARDS))
def test_scripts_parse(name, tmp_path):
    board = get_board(name)
    for text in (hls_script(board), vivado_script(board, tmp_path / "out dir")):
        ok, msg = tcl_syntax_ok(text)
        assert ok, msg


@needs_tclsh
def test_syntax_check_finds_errors():
    assert tcl_syntax_ok("set a 1\nputs $a\n") == (True, "")
    ok, msg = tcl_syntax_ok("set a {1\n")
    assert not ok and "unbalanced" in msg
    ok, msg = tcl_syntax_ok("set a 1\n\nputs [list \"x\"y]\n")
    assert not ok and msg.startswith("line 3") and "close-quote" in msg
    ok, msg = tcl_syntax_ok("foreach p {a b} {\n    puts {p}q\n}\n")      # inside a loop body
    assert not ok and "close-brace" in msg


def test_tcl_word_quotes_specials():
    assert tcl_word("xc7z020clg400-1") == "xc7z020clg400-1"
    assert tcl_word("a b") == '"a b"'
    assert tcl_word('p$[x]"\\') == '"p\\$\\[x\\]\\"\\\\"'


# ---- Vitis HLS under the stub

@needs_tclsh
@pytest.mark.parametrize("name", list(BOARDS))
def test_hls_script_part_clock_and_steps(name, tmp_path):
    board = get_board(name)
    run = run_with_stub(hls_script(board, steps=["export", "cosim", "csynth", "csim"]), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.args_of("set_part") == [(board.part,)]
    assert run.args_of("create_clock") == [("-period", "10", "-name", "default")]
    assert run.args_of("open_project") == [("-reset", "bhvit_hls")]
    assert run.args_of("set_top") == [("bhvit_top",)]
    assert ("-flow_target", "vivado") == run.args_of("open_solution")[0][-2:]
    cflags = "-std=c++14 -I/opt/inc dir -Itemplates/hls"
    adds = run.args_of("add_files")
    assert ("src/top.cpp", "-cflags", cflags) in adds and ("src/nodes.cpp", "-cflags", cflags) in adds
    assert ("-tb", "tb/main_tb.cpp", "-cflags", cflags) in adds and ("-tb", "tb/golden") in adds
    steps = [c for c in run.commands if c.endswith("_design")]
    assert steps == ["csim_design", "csynth_design", "cosim_design", "export_design"]
    assert run.args_of("csim_design")[0][-2:] == ("-argv", "tb/golden 8")
    export = run.args_of("export_design")[0]
    assert export[:2] == ("-format", "ip_catalog")
    opts = dict(zip(export[::2], export[1::2]))
    assert [opts[k] for k in ("-vendor", "-library", "-ipname", "-version")] == ["bhvit.org", "hls", "bhvit_top", "1.0"]
    # the project is set up before any step, and nothing vendor-side runs after the export
    assert run.commands.index("set_part") < run.commands.index("csim_design")
    assert run.commands[-1] == "export_design"


@needs_tclsh
@pytest.mark.parametrize("steps", [["csim"], ["csynth", "export"], ["cosim"], ["csim", "csynth"]])
def test_hls_script_runs_only_chosen_steps(steps, tmp_path):
    run = run_with_stub(hls_script(get_board(), steps=steps), tmp_path)
    assert run.returncode == 0, run.stderr
    assert [c[:-len("_design")] for c in run.commands if c.endswith("_design")] == \
        [s for s in ("csim", "csynth", "cosim", "export") if s in steps]
    # co-simulation without synthesis reuses the previous solution: no reset
    assert ("-reset" in run.args_of("open_project")[0]) == (steps != ["cosim"])


def test_hls_render_rejects_bad_input():
    board = get_board()
    with pytest.raises(ValueError, match="steps"):
        hls_script(board, steps=["csim", "impl"])
    with pytest.raises(ValueError, match="tb_sources"):
        hls_script(board, steps=["csim"], tb_sources=[])
    with pytest.raises(ValueError, match="version"):
        hls_script(board, ip=dict(vendor="v", library="l", name="n"))


# ---- Vivado under the stub

@needs_tclsh
@pytest.mark.parametrize("name", list(BOARDS))
def test_vivado_script_for_board(name, tmp_path):
    board = get_board(name)
    facts = board.ps_facts
    out = tmp_path / "out dir"
    fake_vivado_outputs(out, gen="gen" if name != "pynq-z1" else "srcs")   # new and old Vivado layouts
    run = run_with_stub(vivado_script(board, out), tmp_path / "stub", returns=installed(board))
    assert run.returncode == 0, run.stderr
    create = run.args_of("create_project")[0]
    assert create[create.index("-part") + 1] == board.part
    assert ("board_part", board.board_part, "") in run.args_of("set_property")
    assert "WARNING" not in run.stdout

    cells = {a[-1]: a[a.index("-vlnv") + 1] for a in run.args_of("create_bd_cell")}
    assert cells["zynq_ps"] == f"xilinx.com:ip:{EXPECTED_PS[name]}"
    assert cells["axi_dma"] == "xilinx.com:ip:axi_dma"
    assert cells["bhvit_top"] == "bhvit.org:hls:bhvit_top:1.0"
    (other_ps,) = {"processing_system7", "zynq_ultra_ps_e"} - {EXPECTED_PS[name]}
    assert not any(other_ps in " ".join(c) for c in run.calls)

    ps_rule = run.args_of("apply_bd_automation")[0]
    assert ps_rule[:2] == ("-rule", f"xilinx.com:bd_rule:{EXPECTED_PS[name]}")
    assert "apply_board_preset 1" in ps_rule[3]
    dicts = [props(a[1]) for a in run.args_of("set_property") if a[0] == "-dict"]
    ps_props, dma_props = dicts[0], dicts[1]
    assert ps_props[facts.freq_property] == "100"
    assert ps_props["CONFIG.PCW_USE_S_AXI_HP0" if board.ps == "ps7" else "CONFIG.PSU__USE__S_AXI_GP2"] == "1"
    assert dma_props["CONFIG.c_include_sg"] == "0" and dma_props["CONFIG.c_sg_length_width"] == "26"
    assert dma_props["CONFIG.c_m_axis_mm2s_tdata_width"] == "64"
    assert dma_props["CONFIG.c_s_axis_s2mm_tdata_width"] == "32"

    pins = [a[0] for a in run.args_of("get_bd_intf_pins")]
    for p in ("bhvit_top/in_stream", "bhvit_top/out_stream", "axi_dma/M_AXIS_MM2S", "axi_dma/S_AXIS_S2MM",
              f"zynq_ps/{facts.hp_slave}"):
        assert p in pins
    assert f"zynq_ps/{facts.fclk}" in [a[0] for a in run.args_of("get_bd_pins")]
    lite = [a[3] for a in run.args_of("apply_bd_automation") if a[1] == "xilinx.com:bd_rule:axi4"]
    assert len(lite) == 2
    for cfg, slave in zip(lite, ("/bhvit_top/s_axi_control", "/axi_dma/S_AXI_LITE")):
        assert f"Master /zynq_ps/{facts.gp_master}" in cfg and f"Slave {slave}" in cfg

    order = run.commands
    assert order.index("create_project") < order.index("create_bd_design") < order.index("validate_bd_design") \
        < order.index("make_wrapper") < order.index("launch_runs") < order.index("wait_on_run")
    launch = run.args_of("launch_runs")[0]
    assert launch[0] == "impl_1" and "write_bitstream" in launch and launch[-2:] == ("-jobs", "4")
    assert (out / f"{DESIGN}.bit").read_bytes() == b"bitstream"
    assert (out / f"{DESIGN}.hwh").read_text() == "<hwh/>"


@needs_tclsh
def test_vivado_writes_the_post_route_timing_next_to_the_overlay(tmp_path):
    """timing_vivado.json holds what Vivado's timing commands answer, as valid JSON (pin names
    with quotes and backslashes escaped; a property Vivado leaves empty is null)."""
    board = get_board("pynq-z2")
    out = tmp_path / "out"
    fake_vivado_outputs(out)
    answers = installed(board, **{"get_timing_paths": "p1 p2", "get_property SLACK": "-0.412",
                                  "get_property DATAPATH_DELAY": "9.87", "get_property LOGIC_LEVELS": "12",
                                  "get_property STARTPOINT_PIN": "top_i/acc_reg[3]/C",
                                  "get_property ENDPOINT_PIN": 'odd\\"name/D', "get_property STATS.WNS": "-0.412",
                                  "get_property STATS.TNS": "-3.5"})
    run = run_with_stub(vivado_script(board, out), tmp_path / "stub", returns=answers)
    assert run.returncode == 0, run.stderr
    assert "not met at 100 MHz (worst negative slack -0.412 ns)" in run.stdout
    assert run.commands.index("wait_on_run") < run.commands.index("open_run") < run.commands.index("get_timing_paths")
    assert run.args_of("report_timing_summary")[0] == ("-max_paths", "10", "-file", f"{out}/timing_summary.rpt")
    assert run.args_of("get_timing_paths")[0] == ("-setup", "-max_paths", "10", "-nworst", "1", "-sort_by", "slack")
    got = json.loads((out / "timing_vivado.json").read_text())
    assert got["clock_mhz"] == 100 and got["wns_ns"] == -0.412 and got["tns_ns"] == -3.5 and got["whs_ns"] is None
    assert got["paths"] == [dict(slack_ns=-0.412, datapath_ns=9.87, logic_levels=12, start="top_i/acc_reg[3]/C",
                                 end='odd\\"name/D')] * 2


@needs_tclsh
def test_vivado_without_board_files_uses_the_part(tmp_path):
    board = get_board("zcu104")
    out = tmp_path / "out"
    fake_vivado_outputs(out)
    answers = installed(board)
    del answers["get_board_parts"]
    run = run_with_stub(vivado_script(board, out), tmp_path / "stub", returns=answers)
    assert run.returncode == 0, run.stderr
    assert "board files" in run.stdout and board.board_part in run.stdout
    assert not [a for a in run.args_of("set_property") if a[0] == "board_part"]
    assert "apply_board_preset 0" in run.args_of("apply_bd_automation")[0][3]
    # the exact version was asked for first, then any version of the same board
    asked = run.args_of("get_board_parts")
    assert asked[0] == ("-quiet", board.board_part)
    assert asked[1][-1] == "xilinx.com:zcu104:part0:*"


@needs_tclsh
def test_vivado_stops_on_failed_run_or_missing_ip(tmp_path):
    board = get_board("pynq-z2")
    answers = installed(board, **{"get_property PROGRESS": "0%", "get_property STATUS": "synth_design ERROR"})
    run = run_with_stub(vivado_script(board, tmp_path / "out"), tmp_path / "a", returns=answers)
    assert run.returncode != 0
    assert "synth_1 failed" in run.stderr and "synth_design ERROR" in run.stderr
    assert not (tmp_path / "out" / f"{DESIGN}.bit").exists()

    answers = installed(board)
    del answers["get_ipdefs"]
    run = run_with_stub(vivado_script(board, tmp_path / "out"), tmp_path / "b", returns=answers)
    assert run.returncode != 0 and "bhvit.org:hls:bhvit_top:1.0" in run.stderr
    assert "create_bd_design" not in run.commands


def test_vivado_render_rejects_bad_input(tmp_path):
    board = get_board()
    with pytest.raises(ValueError, match="in_bits"):
        vivado_script(board, tmp_path, in_bits=48)
    with pytest.raises(ValueError, match="design"):
        vivado_script(board, tmp_path, design="bad name")
