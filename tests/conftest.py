"""Shared fixtures: the shipped checkpoint, Fashion-MNIST and its integer network; the
``--golden`` option.

Golden comparisons (a golden model against C simulation or RTL simulation: every test of
tests/test_hls_*.py and tests/test_rtl_*.py, and any test marked ``golden``) take most of the
suite's time and run only with ``pytest tests/ --golden`` (what ``make test`` and CI run);
without it they are deselected and the summary says how many.
"""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "checkpoints/bhvit_pynq_fmnist/model.pt"
GOLDEN_MODULES = ("test_hls_", "test_rtl_")        # every test of these modules is marked golden
_DESELECTED = pytest.StashKey[int]()


def pytest_addoption(parser):
    parser.addoption("--golden", action="store_true", default=False,
                     help="also run the golden-model comparisons against C and RTL simulation (tests/test_hls_*.py, "
                          "tests/test_rtl_*.py and tests marked golden); `make test` does")


def pytest_configure(config):
    config.addinivalue_line("markers", "golden: compares a golden model with C or RTL simulation; runs only with "
                                       "--golden (deselected otherwise)")


# `make test` runs the suite on two pytest-xdist workers (--dist loadgroup): the op tests
# (tests/ops/) spread test by test; every other module stays on one worker with its fixtures, and
# the modules that build the same large design share one, so it is built once (the caches of
# hw/cache.py are safe to fill from both workers, but a duplicate build would cost minutes).
SHARED_BUILDS = {
    "test_rtl_whole.py": "shipped_rtl_top", "test_sim_flow.py": "shipped_rtl_top",
    "test_driver.py": "shipped_rtl_top",
    "test_hls_csim.py": "shipped_hls_nodes", "test_hls_flow.py": "shipped_hls_nodes",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name.startswith(GOLDEN_MODULES):
            item.add_marker(pytest.mark.golden)
        if item.path.parent.name != "ops":
            item.add_marker(pytest.mark.xdist_group(SHARED_BUILDS.get(item.path.name, item.path.stem)))
    if config.getoption("--golden"):
        return
    golden = [item for item in items if item.get_closest_marker("golden")]
    if golden:
        config.hook.pytest_deselected(items=golden)
        items[:] = [item for item in items if not item.get_closest_marker("golden")]
    config.stash[_DESELECTED] = len(golden)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = config.stash.get(_DESELECTED, 0)
    if n:
        terminalreporter.write_line(f"{n} golden comparison{'s' if n > 1 else ''} (golden model vs C / RTL simulation) "
                                    f"{'were' if n > 1 else 'was'} deselected; run them with `pytest tests/ --golden` "
                                    "(or `make test`)", yellow=True, bold=True)


@pytest.fixture(scope="session")
def shipped():
    """(float model in eval mode, train split, test split)."""
    from model.checkpoint import model_from_checkpoint
    from model.data import load_split
    model, _ = model_from_checkpoint(CKPT)
    model.eval()
    return model, load_split("fmnist", "train"), load_split("fmnist", "test")


@pytest.fixture(scope="session")
def shipped_net(shipped):
    """The shipped model folded at the default 10-bit formats (64 calibration images)."""
    from hw.intnet import IntNet, QuantSpec
    model, train, _ = shipped
    return IntNet.from_model(model, train.images[:64], train.mean, train.std, QuantSpec(act_bits=10, lut_bits=10))


@pytest.fixture(scope="session")
def shipped_sim_graph(shipped_net):
    """shipped_net's graph lowered and folded as `make sim BOARD=pynq-z2` folds it by default: the estimate counts
    the RTL top's FIFOs as its sizing is expected to leave them (flows.common.fold_for_board, sized=True)."""
    from flows.boards import get_board
    from flows.hls import DEFAULT_MAX_UTIL, DEFAULT_TARGET_CYCLES, fold_for_board
    from hw import rtl_top
    from hw.passes import lower
    g = lower(shipped_net.graph)
    size = shipped_net.cfg.img_size
    fold_for_board(g, (size, size, shipped_net.cfg.in_chans), get_board("pynq-z2"), DEFAULT_TARGET_CYCLES,
                   DEFAULT_MAX_UTIL, rtl_top.rtl_design, sized=True)
    return g


@pytest.fixture(scope="session")
def shipped_intnet_file(shipped_net, tmp_path_factory):
    """shipped_net saved as `make golden` writes it (for the command lines' --intnet)."""
    path = tmp_path_factory.mktemp("intnet") / "intnet.npz"
    shipped_net.save(path)
    return path


@pytest.fixture(scope="session")
def shipped_pynq_graph(shipped_net):
    """shipped_net's graph lowered for hardware (hw.passes.lower) with the folding `make hls BOARD=pynq-z2` chooses by
    default (so per-node C simulation and the whole-top flow share compiled nodes)."""
    from flows.boards import get_board
    from flows.hls import DEFAULT_MAX_UTIL, DEFAULT_TARGET_CYCLES, fold_for_board
    from hw.passes import lower
    g = lower(shipped_net.graph)        # a new graph (hw/passes.py), as the flows build it
    size = shipped_net.cfg.img_size
    fold_for_board(g, (size, size, shipped_net.cfg.in_chans), get_board("pynq-z2"), DEFAULT_TARGET_CYCLES,
                   DEFAULT_MAX_UTIL)
    return g
