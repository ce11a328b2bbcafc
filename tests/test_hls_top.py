"""The generated HLS dataflow top (hw/hls_top.py) in C simulation.

A small graph with every piece of plumbing the top generates (a pixel stream
from AXI-Stream beats, a tensor with two readers, producers and consumers of
different PE, multi-input nodes, a map-buffering branch, logits to AXI-Stream)
is compiled with its testbench and must give the golden model's outputs.
"""
import numpy as np
import pytest

from hw import csim, dataflow, hls_top
from hw.execute import run
from hw.graph import Graph, Node
from hw.ops import FoldingError


def _affine(name, inputs, c, bits, rng, pc_k=None, pe=1):
    n = len(inputs)
    params = {f"m{i}": rng.integers(-300, 300, c) for i in range(n)}
    params["bias"] = rng.integers(-2000, 2000, c)
    return Node("Affine", name, list(inputs), [name], dict(lshifts=[0] * n, shift=6, bits=bits,
                                                           pc_k=list(pc_k or [0] * n), PE=pe), params, f"INT{bits}")


def small_graph(seed=0, pe=(2, 4, 2, 2, 1, 4, 2, 8, 8, 2)):
    """4x4 tokens of 4 channels -> affine -> sign -> XNOR MVAU (8 outputs) -> affine with a channel-repeat
    shortcut -> box sum along H and channel mix -> affine join -> token sum."""
    rng = np.random.default_rng(seed)
    c, mh = 4, 8
    nodes = [
        _affine("a", ["image"], c, 10, rng, pe=pe[0]),
        Node("Thresholding", "t", ["a"], ["t"], dict(PE=pe[1]),
             dict(thresholds=rng.integers(-100, 100, (c, 1))), "BIPOLAR"),
        Node("MVAU", "m", ["t"], ["m"], dict(MW=c, MH=mh, SIMD=pe[2], PE=pe[3]),
             dict(weights=rng.choice([-1, 1], (c, mh))), "UINT3"),
        Node("RepeatChannels", "rep", ["a"], ["rep"], dict(ratio=2, PE=pe[4]), {}, "INT10"),
        _affine("u", ["m", "rep"], mh, 10, rng, pc_k=[c, 0], pe=pe[5]),
        Node("ShiftBranch", "sb", ["u"], ["sb"], dict(kind="box", axis="h", reach=1, H=4, W=4, PE=pe[6]), {},
             "INT12"),
        # a channel mix moves 10-bit values but its tensor is typed INT11: the top widens it for o
        Node("ShiftBranch", "mx", ["u"], ["mx"], dict(kind="mix", axis="", reach=1, H=4, W=4, PE=pe[9]), {},
             "INT11"),
        _affine("o", ["u", "sb", "mx"], mh, 10, rng, pe=pe[7]),
        Node("TokenSum", "ts", ["o"], ["ts"], dict(PE=pe[8]), {}, "INT15"),
    ]
    return Graph(nodes, "image", "ts", classes=mh)


def test_top_plumbing(tmp_path):
    d = hls_top.design(small_graph(), (16, 4), "small")
    assert {p.kind for p in d.processes} == {"axis_in", "node", "fanout", "refold", "axis_out"}
    top = (hls_top.write_sources(d, tmp_path)["include"] / f"{hls_top.TOP}.cpp").read_text()
    # a's first reader (the affine, PE 2) takes two pixels per word; a is read by t and rep
    assert "bhvit::axis_to_stream<64, 8, 2, 64>(in_stream, s_image, images);" in top
    assert "static void fan_s_a(" in top and "fan_s_a(s_a, s_a_0, s_a_1, images * 32);" in top
    assert "bhvit::stream_to_axis<32, 15, true, 8, 8>(s_ts, out_stream, images);" in top
    by_label = {c.label: c for c in d.channels}
    assert {"a.0", "a.1"} <= set(by_label)                 # a is read by t and rep
    # o joins u (delay 0) with the box sum and the channel mix (delay 1: they buffer the map):
    # u's copy for o holds an image and a row; the join u meets the MVAU (a row late) with the
    # repeat: rep's copy holds two rows, m's one; inputs of one-input nodes stay at 2
    def per_row(label):
        return by_label[label].words_per_image // 16
    assert by_label["u.to.o"].depth == by_label["u.to.o"].words_per_image + per_row("u.to.o") + 2
    assert by_label["sb.to.o"].depth == per_row("sb.to.o") + 2
    assert by_label["rep.to.u"].depth == 2 * per_row("rep.to.u") + 2
    assert by_label["m.to.u"].depth == per_row("m.to.u") + 2
    assert by_label["t"].depth == by_label["a.0"].depth == dataflow.DEFAULT_DEPTH
    # what make sim expects its sizing to leave: the skew without the row of slack
    assert by_label["u.to.o"].expected_depth == by_label["u.to.o"].words_per_image + 2
    assert by_label["rep.to.u"].expected_depth == per_row("rep.to.u") + 2
    assert by_label["sb.to.o"].expected_depth == by_label["m.to.u"].expected_depth == 2
    from flows.boards import get_board
    from flows.common import estimate
    built, sized = (estimate(small_graph(), (16, 4), get_board("pynq-z2"), d, s) for s in (False, True))
    assert sized["fifo_luts"] < built["fifo_luts"] and sized["cost"] == built["cost"]
    assert "bhvit::refold<8, 10, 11, true, 2, 8>(s_mx, " in top                 # mx: 10-bit words widened
    assert top.count("bhvit::refold<") == sum(p.kind == "refold" for p in d.processes)


def test_a_join_of_streams_that_wait_for_nothing_gets_no_slack():
    """Two streaming kernels joined: neither input waits nor comes in bursts, so both keep the
    default two words (a row of slack each cost LUT RAM the RTL simulation never used)."""
    rng = np.random.default_rng(1)
    g = Graph([_affine("a", ["image"], 4, 10, rng), _affine("b", ["image"], 4, 10, rng),
               _affine("j", ["a", "b"], 4, 10, rng)], "image", "j", classes=4)
    by_label = {c.label: c for c in hls_top.design(g, (16, 4), "join").channels}
    assert by_label["a"].depth == by_label["b"].depth == dataflow.DEFAULT_DEPTH


@pytest.mark.parametrize("pe", [(1,) * 10, (2, 4, 2, 2, 1, 4, 2, 8, 8, 2), (4, 4, 4, 8, 4, 8, 8, 8, 8, 2)])
def test_top_csim_equals_golden(tmp_path, pe):
    g = small_graph(pe=pe)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 16, 4))   # already in token order: the stem is not part of it
    images[0] = 255
    want = run(g, images)
    d = hls_top.design(g, (16, 4), "small")
    files = hls_top.write_sources(d, tmp_path)
    exe = csim.build_project(files, progress=False)
    res = csim.run_testbench(exe, images, want, tmp_path / "run")
    assert res["mismatched_images"] == 0 and res["returncode"] == 0
    assert np.array_equal(res["logits"], want)
    # the testbench itself reports a wrong expectation (so Vitis csim / cosim fail on a mismatch)
    wrong = want.copy()
    wrong[3, 1] += 1
    res = csim.run_testbench(exe, images, wrong, tmp_path / "run2")
    assert res["returncode"] == 1 and res["mismatched_images"] == 1


def test_folding_that_does_not_divide_names_the_node():
    with pytest.raises(FoldingError, match=r"u: PE=3 does not divide 8; legal values: \[1, 2, 4, 8\]"):
        hls_top.design(small_graph(pe=(2, 4, 2, 2, 1, 3, 2, 8, 8, 2)), (16, 4), "small")
