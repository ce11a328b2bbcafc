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
