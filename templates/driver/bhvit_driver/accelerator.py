"""The accelerator behind PYNQ's objects: overlay, DMA buffers, control registers.

Only the names PYNQ gives every overlay are used (``pynq.Overlay``, ``pynq.allocate``, the AXI
DMA's ``sendchannel`` / ``recvchannel`` with ``transfer`` / ``wait`` / ``idle``, and the
accelerator IP's ``write`` / ``read``), so the same code runs on a board and on the simulated
board of the host's tests (``platform=``: any object with ``Overlay`` and ``allocate``).

One run of ``n`` images: write ``n`` to the ``images`` register, arm the DMA's receive channel
with ``n * classes`` output beats, send ``n * beats_per_image`` input beats, set ap_start, wait
for both channels.  The output stream's TLAST on its last beat ends the receive transfer.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from .packing import beats_per_image, output_dtype, pack_images, quantize, unpack_logits

HERE = os.path.dirname(os.path.abspath(__file__))
AP_START = 0x1
DMA_MAX_BYTES = (1 << 26) - 1     # the DMA's 26-bit length register (flows/tcl.py length_bits)


class AcceleratorError(RuntimeError):
    """The accelerator did not answer as it should (timeout, DMA error)."""


def load_params(params=None) -> dict:
    """The bundle's parameters: a dict, a path to a params.json, or None (the one beside this package)."""
    if isinstance(params, dict):
        return params
    path = params or os.path.join(HERE, "params.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no accelerator parameters at {path}: the deploy bundle writes bhvit_driver/params.json "
                                "(make bitstream)")
    with open(path) as fh:
        return json.load(fh)


def default_bitfile(params: dict) -> str:
    """The bitstream named in the parameters, next to the driver package (the bundle's layout)."""
    return os.path.join(os.path.dirname(HERE), params["bitfile"])


def _pynq():
    try:
        import pynq
    except ImportError:
        raise ImportError("the pynq package is not importable: run this on the board (PYNQ image; as root or in "
                          "PYNQ's virtual environment), or on the host's simulated board: python -m flows.simboard")
    return pynq


class Accelerator:
    """``Accelerator(bitfile=None, params=None, platform=None, batch_size=None, download=True)``.

    ``predict(images)`` -> (N, classes) integer logits; ``classify(images)`` -> (N,) classes;
    ``evaluate(images, labels)`` -> accuracy and timing; ``benchmark()`` -> images/s and latency.
    Images are quantised and packed as :mod:`bhvit_driver.packing` says; batches of at most
    ``batch_size`` images go through the DMA in one transfer each way.
    """

    def __init__(self, bitfile=None, params=None, platform=None, batch_size=None, download=True, timeout_s=10.0):
        self.params = load_params(params)
        self.platform = platform if platform is not None else _pynq()
        self.bitfile = bitfile or default_bitfile(self.params)
        # (a simulated board, flows/simboard.py, has the design's Verilator model instead of a bitstream)
        if not getattr(self.platform, "simulated", False) and not os.path.exists(self.bitfile):
            raise FileNotFoundError(f"no bitstream at {self.bitfile} (its .hwh must lie beside it, same base name)")
        self.overlay = self.platform.Overlay(self.bitfile, download=download)
        p = self.params
        try:
            self.ip = getattr(self.overlay, p["ip_name"])
            self.dma = getattr(self.overlay, p["dma_name"])
        except AttributeError as exc:
            raise AcceleratorError(f"the overlay has no {exc.args[0] if exc.args else 'such'} block: is {self.bitfile} "
                                   f"a {p['model']} bitstream with {p['ip_name']} and {p['dma_name']}?") from None
        self.p_in, self.p_out = p["input"], p["output"]
        self.beats = beats_per_image(self.p_in)
        self.in_bytes = self.beats * self.p_in["axis_bits"] // 8
        self.out_bytes = self.p_out["classes"] * self.p_out["axis_bits"] // 8
        self.max_batch = DMA_MAX_BYTES // max(self.in_bytes, self.out_bytes)
        self.batch_size = min(int(batch_size or p.get("batch_size", 1000)), self.max_batch)
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.timeout_s = timeout_s
        self._buffers = {}

    # ------------------------------------------------------------------ buffers, one run
    def buffers(self, n: int):
        """(input, output) DMA buffers for ``n`` images, allocated once per size and reused."""
        if n not in self._buffers:
            ibuf = self.platform.allocate(shape=(n * self.beats,), dtype=np.dtype(f"u{self.p_in['axis_bits'] // 8}"))
            obuf = self.platform.allocate(shape=(n * self.p_out["classes"],), dtype=output_dtype(self.p_out))
            self._buffers[n] = (ibuf, obuf)
        return self._buffers[n]

    def _wait(self, channel, what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not channel.idle:
            if time.monotonic() > deadline:
                raise AcceleratorError(f"the DMA's {what} did not finish within {self.timeout_s} s: the accelerator is "
                                       "stuck or the overlay is not the one this driver was generated for")
        channel.wait()

    def execute(self, n: int) -> None:
        """Run ``n`` images already packed into ``buffers(n)[0]``; the output lands in ``buffers(n)[1]``."""
        ibuf, obuf = self.buffers(n)
        ctrl = self.params["control"]
        ibuf.flush()
        self.ip.write(ctrl["images"], n)
        self.dma.recvchannel.transfer(obuf)
        self.dma.sendchannel.transfer(ibuf)
        self.ip.write(ctrl["ap_ctrl"], AP_START)
        self._wait(self.dma.sendchannel, "send (MM2S) channel")
        self._wait(self.dma.recvchannel, "receive (S2MM) channel")
        obuf.invalidate()

    # ------------------------------------------------------------------ inference
    def predict(self, images, batch_size=None) -> np.ndarray:
        """(N, classes) int64 logits of the images (any shape :func:`packing.quantize` takes)."""
        pixels = quantize(images, self.p_in)
        bs = min(int(batch_size or self.batch_size), self.max_batch)
        out = np.empty((len(pixels), self.p_out["classes"]), dtype=np.int64)
        for s in range(0, len(pixels), bs):
            chunk = pixels[s:s + bs]
            n = len(chunk)
            ibuf, obuf = self.buffers(n)
            ibuf[:] = pack_images(chunk, self.p_in)
            self.execute(n)
            out[s:s + n] = unpack_logits(np.asarray(obuf), self.p_out, n)
        return out

    def classify(self, images, batch_size=None) -> np.ndarray:
        return np.argmax(self.predict(images, batch_size), axis=1)

    def evaluate(self, images, labels, batch_size=None) -> dict:
        """Top-1 accuracy on labelled images, with the wall time of the whole run."""
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        t0 = time.perf_counter()
        pred = self.classify(images, batch_size)
        dt = time.perf_counter() - t0
        correct = int((pred == labels).sum())
        return dict(images=int(len(labels)), correct=correct, accuracy=correct / len(labels), seconds=dt,
                    images_per_s=len(labels) / dt if dt > 0 else float("inf"))

    def benchmark(self, batch_size=None, repeats: int = 5) -> dict:
        """Throughput of full batches (DMA + accelerator, and with packing / unpacking on the ARM
        core) and the latency of one image, medians over ``repeats`` runs on random pixels (the
        accelerator's time does not depend on the values)."""
        bs = min(int(batch_size or self.batch_size), self.max_batch)
        rng = np.random.default_rng(0)
        hi = (1 << self.p_in["bits"]) - 1
        x = rng.integers(0, hi + 1, size=(bs,) + tuple(self.p_in["shape"]), dtype=np.int64)
        ibuf, obuf = self.buffers(bs)
        t_pack, t_run, t_unpack = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ibuf[:] = pack_images(x, self.p_in)
            t1 = time.perf_counter()
            self.execute(bs)
            t2 = time.perf_counter()
            unpack_logits(np.asarray(obuf), self.p_out, bs)
            t3 = time.perf_counter()
            t_pack.append(t1 - t0)
            t_run.append(t2 - t1)
            t_unpack.append(t3 - t2)
        one = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.predict(x[:1])
            one.append(time.perf_counter() - t0)
        run, pack, unpack = (float(np.median(v)) for v in (t_run, t_pack, t_unpack))
        return dict(batch_size=bs, repeats=repeats, run_s=run, pack_s=pack, unpack_s=unpack,
                    images_per_s=bs / run, images_per_s_with_packing=bs / (run + pack + unpack),
                    latency_one_image_s=float(np.median(one)))

    def close(self) -> None:
        """Free the DMA buffers."""
        for ibuf, obuf in self._buffers.values():
            for b in (ibuf, obuf):
                free = getattr(b, "freebuffer", None)
                if free:
                    free()
        self._buffers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
