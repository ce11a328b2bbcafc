"""The fold's format check: it widens the formats only where the integer network
loses more than the allowed points against float on held-back training images,
narrowest first, keeps hand-set formats, and reuses its decision."""
import numpy as np
import pytest
import torch

from hw import formats
from model.data import Split

N_CALIB, N_CHECK = 8, 400


class FakeModel(torch.nn.Module):
    """The float model: right on every image."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, 1].round().long(), 10).float()


class _IndexedNet:
    """The integer network: right on the first ``right`` held-back images (counted in the order the
    check feeds them), one class off on the others."""

    def __init__(self, spec, right):
        self.spec, self.right, self.seen = spec, right, 0
        self.norm_mean, self.norm_std = (0.0,), (1 / 255,)   # the float model sees the raw label pixel

    def forward(self, x):
        idx = np.arange(self.seen, self.seen + len(x))
        self.seen += len(x)
        label = x[:, 0, 0, 1].astype(np.int64)
        pred = np.where(idx < self.right, label, (label + 1) % 10)
        return np.eye(10)[pred]


def _train_split():
    n = N_CALIB + N_CHECK
    imgs = torch.zeros((n, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(n) % 10
    imgs[:, 0, 0, 1] = labels.to(torch.uint8)
    return Split(imgs, labels, (0.0,), (1 / 255,))


@pytest.fixture
def folds(monkeypatch, tmp_path):
    """IntNet.from_model replaced: the network of act_bits b is right on accuracy[b] of the images."""
    calls = []
    state = {"accuracy": {}}

    def from_model(model, calib, mean, std, spec, stats=None):
        calls.append((spec.act_bits, spec.calib_quantile))
        right = int(round(state["accuracy"][(spec.act_bits, spec.calib_quantile)] * N_CHECK))
        return _IndexedNet(spec, right)

    monkeypatch.setattr(formats.IntNet, "from_model", staticmethod(from_model))
    monkeypatch.setattr(formats, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(formats, "calibration_stats", lambda model, x, mean, std, q: {"quantile": q})
    return calls, state


def _fold(ckpt, **kw):
    return formats.fold_checked(FakeModel(), ckpt, _train_split(), N_CALIB, N_CHECK, 1.0,
                                cache_parts=kw.pop("cache_parts", dict(data="fake")), log=lambda m: None, **kw)


def test_a_network_within_the_loss_is_not_widened(folds, tmp_path):
    calls, state = folds
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"weights")
    state["accuracy"] = {r: 0.99 for r in formats.LADDER}        # 1.0 point lost: within
    net, choice = _fold(ckpt)
    assert calls == [formats.LADDER[0]] and not choice.widened and choice.within
    assert (net.spec.act_bits, net.spec.calib_quantile) == formats.LADDER[0]
    assert choice.trials[0]["loss"] == pytest.approx(1.0) and choice.trials[0]["stderr"] > 0


def test_a_clear_loss_widens_to_the_first_rung_within(folds, tmp_path):
    calls, state = folds
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"weights")
    # 1.25 points lost at 12 bits: just over, so one more rung
    state["accuracy"] = {(10, 0.9999): 0.85, (12, 0.9999): 0.9875, (12, 1.0): 0.995, (14, 1.0): 1.0, (16, 1.0): 1.0}
    net, choice = _fold(ckpt)
    assert calls == [(10, 0.9999), (12, 0.9999), (12, 1.0)]
    assert (net.spec.act_bits, net.spec.calib_quantile) == (12, 1.0) and net.spec.lut_bits == 12
    assert choice.widened and choice.within and "widened from act 10 bit" in choice.summary()
    # the decision is reused: one more fold, at the chosen formats, and no check
    calls.clear()
    net2, choice2 = _fold(ckpt)
    assert calls == [(12, 1.0)] and choice2.trials == choice.trials
    # another checkpoint is another decision
    ckpt.write_bytes(b"other weights")
    calls.clear()
    _fold(ckpt)
    assert len(calls) == 3


def test_no_rung_within_keeps_the_best_and_points_to_qat(folds, tmp_path):
    calls, state = folds
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"w")
    state["accuracy"] = {(10, 0.9999): 0.5, (12, 0.9999): 0.7, (12, 1.0): 0.8, (14, 1.0): 0.75, (16, 1.0): 0.6}
    net, choice = _fold(ckpt)
    assert len(calls) == len(formats.LADDER)
    assert (net.spec.act_bits, net.spec.calib_quantile) == (12, 1.0) and not choice.within
    assert "make qat" in choice.summary()


def test_hand_set_formats_are_kept_and_only_warned(folds, tmp_path):
    calls, state = folds
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"w")
    state["accuracy"] = {(10, 0.9999): 0.5, (8, 0.9999): 0.5}
    net, choice = _fold(ckpt, act_bits=8)
    assert calls == [(8, 0.9999)] and net.spec.act_bits == 8 and not choice.within and choice.hand_set
    assert "leave --act-bits" in choice.summary()


def test_the_standard_error_is_the_paired_one():
    t = formats.Trial(10, 0.9999, 90.0, 88.0, 2.0, 0.5)
    assert t.exceeds(1.9) and not t.exceeds(2.0)
    # paired: images where both are right or both wrong do not add uncertainty
    net = _IndexedNet(formats.spec_for(10, 0.9999), right=380)
    split = _train_split()
    tr = formats.paired_trial(net, FakeModel(), split.images[N_CALIB:], split.labels[N_CALIB:])
    d = np.r_[np.zeros(380), np.ones(20)]
    assert tr.loss == pytest.approx(5.0) and tr.stderr == pytest.approx(100 * np.sqrt(d.var() / 399), abs=1e-3)
