"""Datasets: Fashion-MNIST (default, fetched from Debian's package when absent),
CIFAR-10 (torchvision's python pickle layout) and ImageFolder trees (ImageNet).

Small data sets are held in memory as uint8 tensors and batched by
:class:`TensorLoader`, which shards across data-parallel ranks and derives its
shuffling from (seed, epoch) alone so that a resumed run sees the same batches.
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_ROOT = Path(os.environ.get("BHVIT_DATA", Path(__file__).resolve().parent.parent / "data"))


class DataError(RuntimeError):
    """A data set is missing or malformed; the message says how to get it."""


@dataclass
class Split:
    images: torch.Tensor   # uint8 (N, C, H, W)
    labels: torch.Tensor   # int64 (N,)
    mean: tuple
    std: tuple


# --------------------------------------------------------------------------- Fashion-MNIST
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def fetch_fashion_mnist(root: Path) -> Path:
    """Make sure the four Fashion-MNIST files exist under root/fashion-mnist.

    They come from Debian's ``dataset-fashion-mnist`` package (MIT licence),
    downloaded with ``apt-get download`` (no root needed) and unpacked with
    ``dpkg -x``."""
    dest = root / "fashion-mnist"
    if all((dest / f).exists() for pair in FMNIST_FILES.values() for f in pair):
        return dest
    # one fetch at a time (parallel test workers, two flows started together): the others wait
    # for it and find the files
    import fcntl
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".fashion-mnist.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((dest / f).exists() for pair in FMNIST_FILES.values() for f in pair):
            return dest
        return _fetch_fashion_mnist(dest)


def _fetch_fashion_mnist(dest: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise DataError(
            f"Fashion-MNIST is not in {dest} and apt-get/dpkg are not available to fetch it. "
            "Copy train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
            f"and t10k-labels-idx1-ubyte.gz there (e.g. from the zalandoresearch/fashion-mnist release).")
    print(f"[data] fetching Fashion-MNIST into {dest} (Debian package dataset-fashion-mnist)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        def download():
            return subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=tmp,
                                  capture_output=True, text=True)
        r = download()
        if r.returncode != 0 and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            r = download()
        debs = list(Path(tmp).glob("dataset-fashion-mnist*.deb"))
        if r.returncode != 0 or not debs:
            raise DataError("could not download Debian's dataset-fashion-mnist package "
                            f"({r.stderr.strip()[-300:]}). Run 'apt-get update' as root and retry, or copy "
                            f"the four Fashion-MNIST .gz files into {dest}.")
        unpack = Path(tmp) / "x"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(unpack)], check=True)
        src = unpack / "usr/share/datasets/fashion-mnist"
        dest.mkdir(parents=True, exist_ok=True)
        for pair in FMNIST_FILES.values():
            for f in pair:
                shutil.copyfile(src / f, dest / (f + ".part"))
                os.replace(dest / (f + ".part"), dest / f)
    return dest


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str, root: Path = DEFAULT_ROOT, pad_to: int = 32) -> Split:
    folder = fetch_fashion_mnist(Path(root))
    img_f, lab_f = FMNIST_FILES[split]
    imgs = torch.from_numpy(_read_idx(folder / img_f).copy()).unsqueeze(1)
    labels = torch.from_numpy(_read_idx(folder / lab_f).astype(np.int64))
    p = (pad_to - imgs.shape[-1]) // 2
    if p > 0:  # zero-pad 28x28 -> 32x32 (background is 0)
        imgs = F.pad(imgs, (p, p, p, p))
    return Split(imgs, labels, (0.2860,), (0.3530,))


# --------------------------------------------------------------------------- CIFAR-10
def load_cifar10(split: str, root: Path) -> Split:
    folder = Path(root)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise DataError(f"CIFAR-10 not found in {root}: missing {', '.join(missing)}. Point DATA_DIR at the "
                        "folder holding cifar-10-batches-py (torchvision's download layout, "
                        "'cifar-10-python.tar.gz' unpacked).")
    xs, ys = [], []
    for n in names:
        with open(folder / n, "rb") as fh:
            d = pickle.load(fh, encoding="latin1")
        xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(d["labels"])
    return Split(torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.int64),
                 (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


# --------------------------------------------------------------------------- ImageFolder
class ImageFolderData(torch.utils.data.Dataset):
    """root/<split>/<class>/<image>: torchvision's ImageFolder layout, decoded
    with Pillow; train uses a random resized crop + flip, eval a centre crop."""

    EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG"}

    def __init__(self, root: Path, split: str, size: int):
        base = Path(root) / ("train" if split == "train" else "val")
        if not base.is_dir():
            raise DataError(f"ImageFolder data: {base} does not exist. Expected {root}/train/<class>/*.jpg "
                            f"and {root}/val/<class>/*.jpg.")
        self.classes = sorted(d.name for d in base.iterdir() if d.is_dir())
        self.items = [(p, i) for i, c in enumerate(self.classes) for p in sorted((base / c).iterdir())
                      if p.suffix in self.EXT]
        if not self.items:
            raise DataError(f"ImageFolder data: no images under {base}")
        self.train, self.size = split == "train", size
        self.mean, self.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image
        path, label = self.items[i]
        img = Image.open(path).convert("RGB")
        w, h = img.size
        if self.train:
            area = w * h * self.rng.uniform(0.08, 1.0)
            ratio = np.exp(self.rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw = int(min(w, round(np.sqrt(area * ratio))))
            ch = int(min(h, round(np.sqrt(area / ratio))))
            x0, y0 = self.rng.integers(0, w - cw + 1), self.rng.integers(0, h - ch + 1)
            img = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((self.size, self.size), Image.BILINEAR)
            if self.rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            s = int(self.size / 0.875)
            img = img.resize((s, s), Image.BILINEAR)
            o = (s - self.size) // 2
            img = img.crop((o, o, o + self.size, o + self.size))
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        return x, label


# --------------------------------------------------------------------------- batching
class TensorLoader:
    """Deterministic in-memory batches with optional augmentation.

    The permutation of epoch e is drawn from a generator seeded with
    (seed, e), then rank r of W takes every W-th index, so ranks see disjoint
    shards of equal size.  Augmentation (random translation by up to
    ``shift`` pixels with zero fill, horizontal flip) uses the same generator.
    """

    def __init__(self, split: Split, batch_size: int, train: bool, seed: int = 0, rank: int = 0,
                 world: int = 1, shift: int = 2, flip: bool = True):
        self.split, self.bs, self.train = split, batch_size, train
        self.seed, self.rank, self.world, self.shift, self.flip = seed, rank, world, shift, flip
        self.mean = torch.tensor(split.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(split.std).view(1, -1, 1, 1)
        n = len(split.labels)
        self.per_rank = n // world if train else (n - rank + world - 1) // world
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return (self.per_rank // self.bs) if self.train else -(-self.per_rank // self.bs)

    def normalize(self, x_u8: torch.Tensor) -> torch.Tensor:
        return (x_u8.float() / 255.0 - self.mean) / self.std

    def _augment(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        s = self.shift
        if s:
            padded = F.pad(x, (s, s, s, s))
            dx = torch.randint(0, 2 * s + 1, (b,), generator=g)
            dy = torch.randint(0, 2 * s + 1, (b,), generator=g)
            rows = (dy.view(b, 1) + torch.arange(h).view(1, h))            # (b, h)
            cols = (dx.view(b, 1) + torch.arange(w).view(1, w))            # (b, w)
            x = padded[torch.arange(b).view(b, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1),
                       rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]
        if self.flip:
            f = torch.rand(b, generator=g) < 0.5
            x = torch.where(f.view(b, 1, 1, 1), x.flip(-1), x)
        return x

    def __iter__(self):
        n = len(self.split.labels)
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        if self.train:
            order = torch.randperm(n, generator=g)[: self.per_rank * self.world]
        else:
            order = torch.arange(n)
        order = order[self.rank::self.world]
        for i in range(len(self)):
            idx = order[i * self.bs:(i + 1) * self.bs]
            x = self.split.images[idx]
            if self.train:
                x = self._augment(x, g)
            yield self.normalize(x), self.split.labels[idx]


DATASETS = ("fmnist", "cifar10", "imagefolder")


def load_split(name: str, split: str, data_dir=None, img_size: int = 32) -> Split:
    if name == "fmnist":
        return load_fashion_mnist(split, Path(data_dir) if data_dir else DEFAULT_ROOT, pad_to=img_size)
    if name == "cifar10":
        if not data_dir:
            raise DataError("CIFAR-10 needs DATA_DIR=<folder with cifar-10-batches-py>; it cannot be "
                            "downloaded here.")
        return load_cifar10(split, data_dir)
    raise DataError(f"unknown data set '{name}'. Known: {', '.join(DATASETS)}")


def make_loader(name: str, split: str, batch_size: int, img_size: int, data_dir=None, seed: int = 0,
                rank: int = 0, world: int = 1, workers: int = 0):
    train = split == "train"
    if name == "imagefolder":
        if not data_dir:
            raise DataError("imagefolder needs DATA_DIR=<root with train/ and val/ class folders>")
        ds = ImageFolderData(Path(data_dir), split, img_size)
        sampler = torch.utils.data.distributed.DistributedSampler(
            ds, num_replicas=world, rank=rank, shuffle=train, seed=seed, drop_last=train)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                             drop_last=train)
        mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
        std = torch.tensor(ds.std).view(1, -1, 1, 1)
        return _NormalizingLoader(loader, sampler, mean, std)
    data = load_split(name, split, data_dir, img_size)
    if data.images.shape[-1] != img_size:
        raise DataError(f"data set '{name}' has {data.images.shape[-1]}x{data.images.shape[-1]} images "
                        f"but the model expects {img_size}x{img_size}")
    return TensorLoader(data, batch_size, train, seed, rank, world)


class _NormalizingLoader:
    def __init__(self, loader, sampler, mean, std):
        self.loader, self.sampler, self.mean, self.std = loader, sampler, mean, std

    def set_epoch(self, e):
        self.sampler.set_epoch(e)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield (x.float() / 255.0 - self.mean) / self.std, y
