"""Datasets: Fashion-MNIST (default, fetched from Debian's package when absent),
CIFAR-10 (torchvision's python pickle layout) and image folders (ImageNet, or any
root/train|val/<class>/<image> tree).

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
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# ImageNet statistics for RGB folders; their luminance mix for a 1-channel model
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GREY_MEAN, GREY_STD = (0.449,), (0.226,)
# Folders of images this small are decoded once into memory and batched like CIFAR-10
IN_MEMORY_MAX_SIZE = 64


def _folder_items(root: Path, split: str):
    base = Path(root) / ("train" if split == "train" else "val")
    if not base.is_dir():
        raise DataError(f"image folder: {base} does not exist. Expected {root}/train/<class>/<image> and "
                        f"{root}/val/<class>/<image> (torchvision's ImageFolder layout; "
                        "'python -m model.data to-imagefolder' writes one from Fashion-MNIST).")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir())
    items = [(p, i) for i, c in enumerate(classes) for p in sorted((base / c).iterdir())
             if p.suffix.lower() in IMAGE_EXT]
    if not items:
        raise DataError(f"image folder: no images ({', '.join(sorted(IMAGE_EXT))}) under {base}/<class>/")
    return classes, items


def _decode(path: Path, mode: str):
    from PIL import Image
    try:
        return Image.open(path).convert(mode)
    except OSError as exc:
        raise DataError(f"image folder: cannot read {path}: {exc}") from None


def _centre_crop(img, size: int):
    """Evaluation view: resize to size/0.875 and cut the centre (images already
    of the model's size are taken as they are)."""
    from PIL import Image
    if img.size == (size, size):
        return img
    s = int(size / 0.875)
    img = img.resize((s, s), Image.BILINEAR)
    o = (s - size) // 2
    return img.crop((o, o, o + size, o + size))


class ImageFolderData(torch.utils.data.Dataset):
    """root/<split>/<class>/<image>: torchvision's ImageFolder layout, decoded
    with Pillow as RGB (or greyscale for a 1-channel model); train uses a random
    resized crop + flip, eval a centre crop."""

    def __init__(self, root: Path, split: str, size: int, channels: int = 3):
        self.classes, self.items = _folder_items(root, split)
        self.train, self.size = split == "train", size
        self.mode = "L" if channels == 1 else "RGB"
        self.mean, self.std = (GREY_MEAN, GREY_STD) if channels == 1 else (RGB_MEAN, RGB_STD)
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image
        path, label = self.items[i]
        img = _decode(path, self.mode)
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
            img = _centre_crop(img, self.size)
        return _to_tensor(img), label


def _to_tensor(img) -> torch.Tensor:
    a = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(a[:, :, None].copy() if a.ndim == 2 else a.copy()).permute(2, 0, 1)


def load_image_folder(root: Path, split: str, size: int, channels: int = 3, limit: int = 0) -> Split:
    """An image folder decoded into memory at the model's size (centre crop).

    ``limit`` > 0 keeps that many images drawn with a fixed seed across all
    classes (the files are sorted by class, so the first N would be one class):
    the hw flows need a few hundred calibration and test images, not all of ImageNet."""
    _, items = _folder_items(root, split)
    if 0 < limit < len(items):
        keep = np.sort(np.random.default_rng(0).permutation(len(items))[:limit])
        items = [items[i] for i in keep]
    mode = "L" if channels == 1 else "RGB"
    imgs = torch.stack([_to_tensor(_centre_crop(_decode(p, mode), size)) for p, _ in items])
    labels = torch.tensor([c for _, c in items], dtype=torch.int64)
    mean, std = (GREY_MEAN, GREY_STD) if channels == 1 else (RGB_MEAN, RGB_STD)
    return Split(imgs, labels, mean, std)


def write_image_folder(data: Split, classes, out: Path, split: str, colour: bool, seed: int = 0,
                       progress: bool = True) -> int:
    """Write a data set as an image folder (PNG files, out/<train|val>/<class>/).

    With ``colour`` each greyscale image becomes RGB: a random dark background
    colour blended with a random bright foreground colour by the grey level, so
    that a 3-channel model sees colour that carries no label (the shapes do).
    Files are written to a temporary folder and renamed into place at the end."""
    from PIL import Image
    from tqdm import tqdm
    dest = Path(out) / ("train" if split == "train" else "val")
    if dest.exists():
        raise DataError(f"{dest} exists already; remove it or write to another folder")
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    imgs = data.images.numpy()
    for c in classes:
        (tmp / c).mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(len(imgs)), desc=f"[data] {dest}", disable=not progress, unit="img"):
        a = imgs[i].transpose(1, 2, 0)
        if colour and a.shape[2] == 1:
            g = a.astype(np.float64) / 255.0
            bg, fg = rng.uniform(0.0, 0.35, 3), rng.uniform(0.55, 1.0, 3)
            a = np.round(255.0 * (bg * (1.0 - g) + fg * g)).astype(np.uint8)
        img = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
        img.save(tmp / classes[int(data.labels[i])] / f"{i:06d}.png")
    os.replace(tmp, dest)
    return len(imgs)


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
CHANNELS = {"fmnist": 1, "cifar10": 3}
# numbered so that an image folder's sorted class names keep Fashion-MNIST's label order
FMNIST_CLASSES = ("0-t-shirt", "1-trouser", "2-pullover", "3-dress", "4-coat", "5-sandal", "6-shirt",
                  "7-sneaker", "8-bag", "9-ankle-boot")
WHERE_TO_GET = {
    1: "DATA=fmnist (fetched here), or DATA=imagefolder DATA_DIR=<root with train/ and val/ class folders>",
    3: "DATA=cifar10 DATA_DIR=<folder holding cifar-10-batches-py> or DATA=imagefolder DATA_DIR=<root with "
       "train/ and val/ class folders>; neither ships here ('python -m model.data to-imagefolder --colour "
       "--out data/fmnist-rgb' writes a colourised Fashion-MNIST folder to try the path)",
}


def check_channels(name: str, channels):
    """A data set whose images have another channel count than the model takes
    ends here, with the data sets that would fit."""
    have = CHANNELS.get(name)
    if channels is None or have is None or have == channels:
        return
    raise DataError(f"the model takes {channels}-channel images but data set '{name}' has {have}-channel "
                    f"images. Pass {WHERE_TO_GET.get(channels, 'an image folder: DATA=imagefolder DATA_DIR=...')}.")


def load_split(name: str, split: str, data_dir=None, img_size: int = 32, channels=None, limit: int = 0) -> Split:
    """One split in memory (uint8 images).  ``channels``: the model's input
    channels, checked against the data set; ``limit``: at most this many images
    (for image folders, which may be large)."""
    if name not in DATASETS:
        raise DataError(f"unknown data set '{name}'. Known: {', '.join(DATASETS)}")
    check_channels(name, channels)
    if name == "fmnist":
        return load_fashion_mnist(split, Path(data_dir) if data_dir else DEFAULT_ROOT, pad_to=img_size)
    if not data_dir:
        raise DataError(f"data set '{name}' needs DATA_DIR (--data-dir): " + (
            "the folder holding cifar-10-batches-py (torchvision's download layout); it cannot be downloaded "
            "here." if name == "cifar10" else "a root with train/<class>/ and val/<class>/ image folders."))
    if name == "cifar10":
        return load_cifar10(split, data_dir)
    return load_image_folder(Path(data_dir), split, img_size, channels or 3, limit)


def make_loader(name: str, split: str, batch_size: int, img_size: int, data_dir=None, seed: int = 0,
                rank: int = 0, world: int = 1, workers: int = 0, channels=None):
    train = split == "train"
    if name == "imagefolder" and data_dir and img_size > IN_MEMORY_MAX_SIZE:
        ds = ImageFolderData(Path(data_dir), split, img_size, channels or 3)
        sampler = torch.utils.data.distributed.DistributedSampler(
            ds, num_replicas=world, rank=rank, shuffle=train, seed=seed, drop_last=train)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                             drop_last=train)
        mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
        std = torch.tensor(ds.std).view(1, -1, 1, 1)
        return _NormalizingLoader(loader, sampler, mean, std)
    # small images (Fashion-MNIST, CIFAR-10, small image folders): decoded once, batched from memory
    data = load_split(name, split, data_dir, img_size, channels)
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


def main(argv=None) -> int:
    """python -m model.data to-imagefolder: write Fashion-MNIST as an image folder."""
    import argparse
    import sys
    p = argparse.ArgumentParser(prog="python -m model.data", description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("to-imagefolder", help="Fashion-MNIST as PNG files in train/ and val/ class folders")
    w.add_argument("--out", required=True, help="root folder to create")
    w.add_argument("--colour", action="store_true",
                   help="RGB images: random background and foreground colour per image")
    w.add_argument("--size", type=int, default=32, help="image size (28x28 zero-padded to this)")
    w.add_argument("--limit", type=int, default=0, help="first N images of each split (0: all)")
    w.add_argument("--data-dir", default=None)
    a = p.parse_args(argv)
    try:
        for split in ("train", "test"):
            d = load_fashion_mnist(split, Path(a.data_dir) if a.data_dir else DEFAULT_ROOT, pad_to=a.size)
            if a.limit:
                d = Split(d.images[:a.limit], d.labels[:a.limit], d.mean, d.std)
            n = write_image_folder(d, FMNIST_CLASSES, Path(a.out), split, a.colour, seed=0 if split == "train" else 1)
            print(f"[data] {n} images -> {Path(a.out) / ('train' if split == 'train' else 'val')}")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
