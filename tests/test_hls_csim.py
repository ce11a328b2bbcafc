"""Every node of the shipped hardware graph in HLS C simulation, the exact-width tables of
synthesis, and a missing header set.  (Each op's own kernel cases are in tests/ops/.)"""
import numpy as np
import pytest

from hw import csim
from tests.ops.harness import case, check_csim


def test_every_node_of_the_shipped_graph_in_csim_equals_golden(shipped_pynq_graph, shipped):
    """Every node of the shipped hardware graph (all 168: every op type has a kernel) with the folding
    `make hls BOARD=pynq-z2` chooses, compiled into one testbench (one translation unit per
    node, a few minutes of g++ on 2 cores), each fed the golden input streams of 8 test
    images: every output equals golden."""
    g = shipped_pynq_graph
    assert any(int(n.attrs.get("PE", 1)) > 1 for n in g.nodes)       # folded, not all PE = 1
    images = shipped[2].images[:8].numpy().transpose(0, 2, 3, 1)
    res = csim.check_graph_nodes(g, images)
    assert len(res) == len(g.nodes) == 168
    assert all(res.values()), [k for k, v in res.items() if not v][:5]


def test_exact_width_tables_of_synthesis_give_the_same_results(monkeypatch):
    """Under synthesis the constant tables are ap_int / ap_uint of their exact width (not the C
    integers g++ builds with): kernels built that way equal golden too (MVAU, Thresholding,
    IntLinear; the Affine in tests/ops/test_affine.py)."""
    monkeypatch.setattr(csim, "CXXFLAGS", [*csim.CXXFLAGS, "-DBHVIT_EXACT_TABLES"])
    rng = np.random.default_rng(5)
    x = rng.choice([-1, 1], (1, 6, 12))
    w = rng.choice([-1, 1], (12, 8))
    mv = case("MVAU", "exact_mvau", [x], ["BIPOLAR"], "UINT4", dict(MW=12, MH=8, SIMD=4, PE=2), dict(weights=w),
              want=(x @ w + 12) // 2)
    code = check_csim(mv)
    assert "BHVIT_UWORD(4, uint64_t)" in code.code and "impl=lutram" in code.code
    t = rng.integers(-600, 600, 8)
    xs = rng.integers(-512, 512, (1, 6, 8))
    check_csim(case("Thresholding", "exact_thr", [xs], ["INT10"], "BIPOLAR", dict(PE=4, weightDataType="INT11"),
                    dict(thresholds=t.reshape(8, 1)), want=np.where(xs >= t, 1, -1)))
    wt, bias = rng.integers(-128, 128, (4, 8)), rng.integers(-10 ** 5, 10 ** 5, 4)
    code = check_csim(case("IntLinear", "exact_ilin", [xs.reshape(6, 8)], ["INT10"], "INT24", dict(SIMD=4, PE=2),
                           dict(w=wt, bias=bias), want=xs.reshape(6, 8) @ wt.T + bias))
    assert "BHVIT_SWORD(8, int8_t)" in code.code


def test_missing_headers_are_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("XILINX_HLS", str(tmp_path))
    monkeypatch.setattr(csim, "ROOT", tmp_path)
    with pytest.raises(csim.CsimError, match="make setup"):
        csim.ap_types_dir()
