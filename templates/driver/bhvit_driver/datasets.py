"""Labelled images for the accuracy measurement, from whatever the board has at hand.

* a folder of image files sorted into one sub-folder per class (``<root>/<class>/*.png``);
  the class is the sub-folder's position in ``params["classes"]`` when its name is there,
  else its integer value (``0`` .. ``9``), else an error naming it;
* a folder or file prefix with the idx files of MNIST / Fashion-MNIST
  (``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``);
* a ``.npz`` with ``images`` (N, H, W[, C]) and ``labels`` (N,).

Image files need Pillow (installed on PYNQ images); the others only numpy.
"""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")
IDX_IMAGES = ("t10k-images-idx3-ubyte", "train-images-idx3-ubyte")


class DatasetError(ValueError):
    """A dataset path the driver cannot read (the message says what it expected)."""


def _open(path):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def read_idx(path) -> np.ndarray:
    """An idx file (optionally gzipped) as a numpy array."""
    with _open(str(path)) as fh:
        head = fh.read(4)
        if len(head) != 4 or head[:2] != b"\x00\x00" or head[2] != 0x08:
            raise DatasetError(f"{path} is not an idx file of unsigned bytes")
        dims = struct.unpack(">" + "I" * head[3], fh.read(4 * head[3]))
        data = np.frombuffer(fh.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: {data.size} bytes for a {dims} array (truncated file?)")
    return data.reshape(dims)


def _find(folder, stem):
    for suffix in ("", ".gz"):
        p = os.path.join(folder, stem + suffix)
        if os.path.exists(p):
            return p
    return None


def load_idx(path):
    """``path``: a folder with the idx pair, or the images file itself."""
    if os.path.isdir(path):
        for stem in IDX_IMAGES:
            img = _find(path, stem)
            if img:
                break
        else:
            return None
    else:
        img = path
    lab = img.replace("images-idx3", "labels-idx1")
    if lab == img or not os.path.exists(lab):
        raise DatasetError(f"no labels file beside {img} (expected {os.path.basename(lab)})")
    return read_idx(img), read_idx(lab).astype(np.int64)


def load_folder(path, classes):
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError("reading image files needs Pillow (pip3 install pillow)") from None
    subdirs = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    images, labels = [], []
    for d in subdirs:
        if d in classes:
            label = classes.index(d)
        elif d.isdigit() and int(d) < len(classes):
            label = int(d)
        else:
            raise DatasetError(f"sub-folder {d!r} of {path} is neither a class name ({', '.join(classes)}) "
                               f"nor a class number 0..{len(classes) - 1}")
        for f in sorted(os.listdir(os.path.join(path, d))):
            if f.lower().endswith(IMAGE_SUFFIXES):
                with Image.open(os.path.join(path, d, f)) as im:
                    images.append(np.asarray(im.convert("L")))
                labels.append(label)
    if not images:
        raise DatasetError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in class sub-folders of {path}")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DatasetError(f"images of different sizes in {path}: {sorted(shapes)}")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_dataset(path, classes, limit: int = 0):
    """(images uint8 (N, H, W[, C]), labels int64 (N,)) from ``path`` (see the module's doc)."""
    path = os.path.expanduser(str(path))
    if not os.path.exists(path):
        raise DatasetError(f"no dataset at {path}")
    if path.endswith(".npz"):
        with np.load(path) as z:
            if "images" not in z or "labels" not in z:
                raise DatasetError(f"{path} lacks the arrays 'images' and 'labels' (it has {', '.join(z.files)})")
            images, labels = z["images"], z["labels"].astype(np.int64)
    else:
        found = load_idx(path) if (os.path.isdir(path) or "idx3" in os.path.basename(path)) else None
        if found is None:
            if not os.path.isdir(path):
                raise DatasetError(f"{path}: expected a folder, an idx images file or a .npz")
            found = load_folder(path, list(classes))
        images, labels = found
    if len(images) != len(labels):
        raise DatasetError(f"{path}: {len(images)} images but {len(labels)} labels")
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels
