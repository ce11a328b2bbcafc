"""The whole shipped PYNQ-Z2 design as `make sim` folds it (168 nodes, every FIFO, fork and gearbox of the stitched
top, hw/rtl_top.py) as one RTL top in Verilator, against the golden model on the first 100
Fashion-MNIST test images (the calls of benchmarks/rtl_whole_model.py).

A golden comparison (runs with ``pytest --golden``): the Verilator build of the top takes about
3 minutes once (cached in build/rtlsim by the hash of its source; `make sim` on the same
integer network shares it), the simulation about a minute.
"""
import shutil

import numpy as np
import pytest

from flows.sim import idle_limit
from hw import rtl_top, rtlsim
from hw.execute import run

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("c++") is None
                                or not (rtlsim.VENV_BIN / "verilator").exists(),
                                reason="needs make, c++ and .venv/bin/verilator (make setup)")


def test_whole_shipped_model_in_rtl_equals_golden_on_100_images(shipped, shipped_sim_graph):
    g = shipped_sim_graph
    shape = (32, 32, 1)
    d = rtl_top.rtl_design(g, shape, "bhvit_pynq_fmnist")
    top = rtl_top.rtl_top(g, shape, "bhvit_pynq_fmnist", d=d)
    images = shipped[2].images[:100].numpy().transpose(0, 2, 3, 1).astype(np.int64)
    want = run(g, images)
    res = rtlsim.simulate(top, images.reshape(-1, shape[-1]), idle=idle_limit(g, shape))
    assert res.out.shape == want.shape == (100, 10)
    assert np.array_equal(res.out, want)
    # every FIFO of the top reported (a deep channel is two chained FIFOs, one count; a direct
    # link has none), drained at the end, never above its depth
    assert len(res.fifos) == sum(c.depth > 0 for c in d.channels) > 0
    assert all(now == 0 and mx <= depth for now, mx, depth in res.fifos.values())
