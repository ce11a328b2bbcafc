"""Data for models other than the shipped one: 3-channel models name the data
sets that fit, image folders are read into memory for the hw flows, and the
Fashion-MNIST image-folder writer gives back the images it was given."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.data import (DataError, Split, check_channels, load_fashion_mnist, load_image_folder, load_split,
                        make_loader, write_image_folder)

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("a", "b", "c")


def _split(n=12, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g)
    return Split(imgs, torch.arange(n) % len(CLASSES), (0.5,), (0.25,))


@pytest.mark.parametrize("name, chans, words", [
    ("fmnist", 3, ["3-channel", "fmnist", "1-channel", "DATA=cifar10", "DATA=imagefolder"]),
    ("cifar10", 1, ["1-channel", "cifar10", "3-channel", "DATA=fmnist"]),
])
def test_a_data_set_with_other_channels_is_refused_with_the_ones_that_fit(name, chans, words):
    with pytest.raises(DataError) as e:
        check_channels(name, chans)
    for w in words:
        assert w in str(e.value)
    check_channels(name, 1 if name == "fmnist" else 3)      # the matching count passes


def test_cifar10_and_image_folders_without_a_folder_say_what_to_pass():
    for name, words in (("cifar10", "cifar-10-batches-py"), ("imagefolder", "train/<class>")):
        with pytest.raises(DataError, match="DATA_DIR") as e:
            load_split(name, "train", None, 32, 3)
        assert words in str(e.value)
    with pytest.raises(DataError, match="Known: fmnist, cifar10, imagefolder"):
        load_split("mnist", "train")


def test_grey_image_folder_reads_back_the_images_written(tmp_path):
    d = _split()
    assert write_image_folder(d, CLASSES, tmp_path, "train", colour=False, progress=False) == 12
    back = load_image_folder(tmp_path, "train", 32, channels=1)
    order = np.argsort(back.labels.numpy(), kind="stable")     # the folder is read class by class
    want = np.concatenate([d.images[d.labels == c].numpy() for c in range(3)])
    assert np.array_equal(back.images.numpy(), want)
    assert np.array_equal(back.labels.numpy(), np.sort(d.labels.numpy()))
    assert order.shape == (12,)
    with pytest.raises(DataError, match="exists already"):        # never overwrites a folder
        write_image_folder(d, CLASSES, tmp_path, "train", colour=False, progress=False)


def test_colour_image_folder_keeps_the_shape_and_adds_colour(tmp_path):
    d = _split(n=6)
    write_image_folder(d, CLASSES, tmp_path, "test", colour=True, progress=False)
    back = load_image_folder(tmp_path, "test", 32, channels=3)
    assert back.images.shape == (6, 3, 32, 32)
    want = np.concatenate([d.images[d.labels == c].numpy() for c in range(3)]).astype(np.int64)
    got = back.images.numpy().astype(np.int64)
    for i in range(6):
        # each colour channel is an increasing function of the grey level: bright stays bright
        for ch in range(3):
            a, b = want[i, 0].ravel(), got[i, ch].ravel()
            assert np.all(np.diff(b[np.argsort(a, kind="stable")]) >= -1)
        assert not np.array_equal(got[i, 0], got[i, 1]) or not np.array_equal(got[i, 1], got[i, 2])


def test_image_folder_limit_draws_from_every_class_and_loader_batches_from_memory(tmp_path):
    d = _split(n=30)
    write_image_folder(d, CLASSES, tmp_path, "train", colour=True, progress=False)
    part = load_image_folder(tmp_path, "train", 32, channels=3, limit=9)
    assert len(part.labels) == 9 and set(part.labels.tolist()) == {0, 1, 2}
    ld = make_loader("imagefolder", "train", 8, 32, data_dir=tmp_path, channels=3)
    x, y = next(iter(ld))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and len(ld) == 3


def test_to_imagefolder_command_writes_fashion_mnist(tmp_path):
    r = subprocess.run([sys.executable, "-m", "model.data", "to-imagefolder", "--out", str(tmp_path / "f"),
                        "--limit", "20"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    back = load_image_folder(tmp_path / "f", "val", 32, channels=1)
    test = load_fashion_mnist("test")
    order = np.argsort(test.labels[:20].numpy(), kind="stable")
    assert np.array_equal(back.images.numpy(), test.images[:20].numpy()[order])


def test_training_a_3_channel_model_on_fashion_mnist_exits_2(tmp_path):
    cfg = tmp_path / "rgb.json"
    cfg.write_text('{"base": "bhvit_pynq_fmnist", "in_chans": 3}')
    r = subprocess.run([sys.executable, "-m", "model.train", "--config", str(cfg), "--data", "fmnist",
                        "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stderr
    assert "3-channel" in r.stderr and "DATA=cifar10" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()
