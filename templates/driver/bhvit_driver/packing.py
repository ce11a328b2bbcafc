"""Input quantisation and the bit layout of the accelerator's two AXI-Stream ports.

Pure numpy, no PYNQ: the same functions run on the board and in the host's tests.

Input port (``params["input"]``): the image's values in H, W, C order, ``bits`` bits each
(raw pixels, 8 bits unsigned for the shipped model: the normalisation is folded into the stem),
``axis_bits // bits`` values per beat, value ``k`` of a beat at bits ``[k*bits, (k+1)*bits)``.
Every image starts on a fresh beat; the unused lanes of its last beat are zero.

Output port (``params["output"]``): one logit per ``axis_bits``-bit beat, ``classes`` beats per
image, the logit in the low ``bits`` bits (two's complement, sign-extended by the hardware;
the driver sign-extends from ``bits`` itself, so it does not rely on the upper bits).
"""
from __future__ import annotations

import numpy as np

_UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


class InputError(ValueError):
    """Images the driver cannot turn into the accelerator's input (the message says why)."""


def beats_per_image(p_in: dict) -> int:
    per_beat = p_in["axis_bits"] // p_in["bits"]
    values = int(np.prod(p_in["shape"]))
    return -(-values // per_beat)


def quantize(images, p_in: dict) -> np.ndarray:
    """Images -> (N, H, W, C) integer pixels of the accelerator's input shape.

    Accepted: one image or a batch; (H, W) / (N, H, W) for one channel, (H, W, C) / (N, H, W, C)
    otherwise (channels last).  Integer images must lie in the input's range (0..255 for
    8-bit pixels); float images in [0, 1] are scaled to it and rounded half up (what the
    training pipeline's uint8 images are).  Images smaller than the input (28x28 Fashion-MNIST
    in a 32x32 model) are zero-padded around the centre as in training; larger ones are an error.
    """
    h, w, c = (int(v) for v in p_in["shape"])
    bits, signed = int(p_in["bits"]), bool(p_in.get("signed", False))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = np.asarray(images)
    if x.dtype == object or x.size == 0:
        raise InputError("no images (an empty or ragged array)")
    single = (x.ndim == 2 and c == 1) or (x.ndim == 3 and c > 1 and x.shape[-1] == c)
    if single:
        x = x[None]
    if x.ndim == 3 and c == 1:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != c:
        raise InputError(f"images of shape {np.asarray(images).shape}: expected (N, H, W, {c}) or (N, H, W) "
                         f"with channels last, {c} channel(s)")
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
            raise InputError("float images must hold values in [0, 1] (or pass integer pixels "
                             f"{lo}..{hi} as they are)")
        x = np.floor(x.astype(np.float64) * hi + 0.5).astype(np.int64)
    elif np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        x = x.astype(np.int64)
        if x.min() < lo or x.max() > hi:
            raise InputError(f"pixel values {x.min()}..{x.max()} are outside the {bits}-bit input range {lo}..{hi}")
    else:
        raise InputError(f"images of dtype {x.dtype}: pass integers ({lo}..{hi}) or floats in [0, 1]")
    ih, iw = x.shape[1:3]
    if ih > h or iw > w:
        raise InputError(f"images of {ih}x{iw} are larger than the accelerator's {h}x{w} input: crop or resize them")
    if (ih, iw) != (h, w):
        top, left = (h - ih) // 2, (w - iw) // 2
        x = np.pad(x, ((0, 0), (top, h - ih - top), (left, w - iw - left), (0, 0)))
    return x


def pack_images(pixels, p_in: dict) -> np.ndarray:
    """(N, H, W, C) pixels (see :func:`quantize`) -> (N * beats,) uint64 (or the port's width)
    beats in the order the input DMA sends them."""
    bits, axw = int(p_in["bits"]), int(p_in["axis_bits"])
    if axw not in _UINT or axw % bits:
        raise InputError(f"{bits}-bit values do not tile a {axw}-bit beat")
    x = np.asarray(pixels, dtype=np.int64)
    n = x.shape[0]
    values = x.reshape(n, -1)
    if values.shape[1] != int(np.prod(p_in["shape"])):
        raise InputError(f"{values.shape[1]} values per image, the input takes {int(np.prod(p_in['shape']))}")
    per_beat, beats = axw // bits, beats_per_image(p_in)
    lanes = np.zeros((n, beats * per_beat), dtype=np.uint64)
    lanes[:, :values.shape[1]] = (values & ((1 << bits) - 1)).astype(np.uint64)
    lanes = lanes.reshape(n * beats, per_beat)
    shifts = (np.arange(per_beat, dtype=np.uint64) * np.uint64(bits))
    words = np.bitwise_or.reduce(lanes << shifts, axis=1)
    return words.astype(_UINT[axw])


def unpack_images(words, p_in: dict, n: int) -> np.ndarray:
    """The inverse of :func:`pack_images`: beats -> (n, H, W, C) int64 pixels."""
    bits, axw = int(p_in["bits"]), int(p_in["axis_bits"])
    per_beat, beats = axw // bits, beats_per_image(p_in)
    w = np.asarray(words).astype(np.uint64).reshape(n * beats, 1)
    shifts = (np.arange(per_beat, dtype=np.uint64) * np.uint64(bits))
    lanes = ((w >> shifts) & np.uint64((1 << bits) - 1)).astype(np.int64).reshape(n, beats * per_beat)
    values = lanes[:, :int(np.prod(p_in["shape"]))]
    if p_in.get("signed", False):
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values.reshape((n,) + tuple(int(v) for v in p_in["shape"]))


def output_dtype(p_out: dict):
    return _UINT[int(p_out["axis_bits"])]


def unpack_logits(words, p_out: dict, n: int) -> np.ndarray:
    """(n * classes,) output beats -> (n, classes) int64 logits (low ``bits`` bits of each beat,
    sign-extended where the output is signed)."""
    bits, classes = int(p_out["bits"]), int(p_out["classes"])
    w = np.asarray(words).astype(np.uint64).reshape(-1)
    if w.size != n * classes:
        raise ValueError(f"{w.size} output beats for {n} images of {classes} logits")
    v = (w & np.uint64((1 << bits) - 1)).astype(np.int64) if bits < 64 else w.view(np.int64)
    if p_out.get("signed", True) and bits < 64:
        v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    return v.reshape(n, classes)


def pack_logits(logits, p_out: dict) -> np.ndarray:
    """What the output port writes for (N, classes) logits: each sign-extended to one beat
    (the inverse of :func:`unpack_logits`, for tests and the simulated board)."""
    bits, axw = int(p_out["bits"]), int(p_out["axis_bits"])
    x = np.asarray(logits, dtype=np.int64).reshape(-1)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if p_out.get("signed", True) else (0, (1 << bits) - 1)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"logits outside the {bits}-bit output range")
    return x.astype(np.int64).view(np.uint64).astype(_UINT[axw]) if axw < 64 else x.view(np.uint64)
