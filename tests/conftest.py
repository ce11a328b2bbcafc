"""Shared fixtures: the shipped checkpoint, Fashion-MNIST and its integer network."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "checkpoints/bhvit_pynq_fmnist/model.pt"


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
def shipped_intnet_file(shipped_net, tmp_path_factory):
    """shipped_net saved as `make golden` writes it (for the command lines' --intnet)."""
    path = tmp_path_factory.mktemp("intnet") / "intnet.npz"
    shipped_net.save(path)
    return path


@pytest.fixture(scope="session")
def shipped_pynq_graph(shipped_net):
    """A copy of shipped_net's graph with the folding `make hls BOARD=pynq-z2` chooses by
    default (so per-node C simulation and the whole-top flow share compiled nodes)."""
    import copy

    from flows.boards import get_board
    from flows.hls import DEFAULT_MAX_UTIL, DEFAULT_TARGET_CYCLES, fold_for_board
    g = copy.deepcopy(shipped_net.graph)
    size = shipped_net.cfg.img_size
    fold_for_board(g, (size, size, shipped_net.cfg.in_chans), get_board("pynq-z2"), DEFAULT_TARGET_CYCLES,
                   DEFAULT_MAX_UTIL)
    return g
