"""The integer network folded from the shipped checkpoint.

It must run on integers only, stay inside every declared format, survive a
save/load round trip bit for bit, and track the float model it came from.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hw.compare import layer_report
from hw.intnet import IntNet, IntNetError, QuantSpec

from tests.conftest import CKPT, ROOT


def fold(shipped, bits):
    model, train, _ = shipped
    return IntNet.from_model(model, train.images[:128], train.mean, train.std,
                             QuantSpec(act_bits=bits, lut_bits=min(bits, 12)))


def float_logits(model, net, x_u8):
    mean = torch.tensor(net.norm_mean).view(1, -1, 1, 1)
    std = torch.tensor(net.norm_std).view(1, -1, 1, 1)
    with torch.no_grad():
        return model((x_u8.float() / 255.0 - mean) / std).numpy()


def test_every_kernel_output_is_an_integer_inside_its_format(shipped):
    _, _, test = shipped
    net = fold(shipped, 10)
    net.trace = {}
    logits = net.forward(test.images[:8].numpy())
    assert logits.dtype == np.int64 and logits.shape == (8, 10)
    checked = 0
    for name, y in net.trace.items():
        assert y.dtype == np.int64, name
        if name in net.fmt:
            f = net.fmt[name]
            assert f.lo <= y.min() and y.max() <= f.hi, name
            checked += 1
    assert checked > 50


def test_save_load_round_trip_is_bit_exact(shipped, tmp_path):
    _, _, test = shipped
    net = fold(shipped, 10)
    net.save(tmp_path / "net.npz")
    back = IntNet.load(tmp_path / "net.npz")
    x = test.images[:6].numpy()
    assert np.array_equal(net.forward(x), back.forward(x))
    assert back.formats_table() == net.formats_table()


def test_wider_formats_track_the_float_model_more_closely(shipped):
    """More activation bits -> less quantisation noise at the logits, and at
    16 bits the integer network decides like the float one.  (The logits never
    match closely: a rounding error that flips one sign before a binary layer
    changes its output by a whole step, so errors do not shrink like 2**-bits.)"""
    model, _, test = shipped
    x = test.images[:32]
    ref = float_logits(model, fold(shipped, 16), x)
    err = {}
    for bits in (8, 16):
        net = fold(shipped, bits)
        got = net.forward(x.numpy()) * 2.0 ** -net.fmt["head.logits"].frac
        err[bits] = float(np.sqrt(((got - ref) ** 2).mean()) / np.sqrt((ref ** 2).mean()))
        if bits == 16:
            assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert err[16] < 0.5 and err[16] < err[8] / 2


def test_layer_report_pairs_kernels_with_float_activations(shipped):
    model, _, test = shipped
    rows = layer_report(model, fold(shipped, 16), test.images[:8])
    names = [r["name"] for r in rows]
    assert "stem.affine" in names and "head.norm" in names
    assert any(n.endswith("attention.token_norm") for n in names)
    assert len(rows) > 60
    assert all(r["sqnr_db"] > 10 for r in rows[:5])           # 16-bit start of the network


def test_unsupported_variants_are_refused_clearly():
    """(every refusal, block by block: tests/test_model_configs.py)"""
    from hw.support import UnsupportedModelError
    from model.registry import create_model
    model = create_model("bhvit_pynq_fmnist", attn_quant="lsq").eval()
    with pytest.raises(UnsupportedModelError, match="QD attention|quantization-decomposition"):
        IntNet.from_model(model, torch.zeros(2, 1, 32, 32, dtype=torch.uint8), (0.5,), (0.5,))


def test_missing_or_corrupted_integer_model(tmp_path):
    with pytest.raises(IntNetError, match="does not exist"):
        IntNet.load(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(IntNetError, match="corrupted"):
        IntNet.load(bad)
    assert bad.read_bytes() == b"not a zip"


def test_golden_cli_writes_report(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hw.golden", "--ckpt", str(CKPT), "--limit", "40", "--calib", "64",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["images"] == 40 and 0 <= rep["int_top1"] <= 100 and rep["layers"]
    assert (tmp_path / "intnet.npz").exists() and (tmp_path / "layers.png").exists()
    assert "integer (golden) top-1" in r.stdout
    # the fold checked itself on held-back training images and kept the shipped model's formats
    f = rep["formats"]
    assert f["images"] == 1000 and (f["act_bits"], f["calib_quantile"]) == (10, 0.9999) and not f["widened"]
    assert rep["spec"]["act_bits"] == 10 and "Format check: act 10 bit" in (tmp_path / "report.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "hw.golden", "--ckpt", str(tmp_path / "nope.pt")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
