"""PYNQ driver of a bhvit-fpga accelerator (generated into the deploy bundle by `make bitstream`).

    from bhvit_driver import Accelerator
    acc = Accelerator()                      # the bitstream and params.json of this bundle
    logits = acc.predict(images)             # (N, 28, 28) uint8 Fashion-MNIST -> (N, 10) int64
    acc.evaluate(images, labels)             # top-1 accuracy, images/s
    acc.benchmark()                          # DMA + accelerator throughput, latency of one image

Command line on the board (in the bundle folder, as root or in PYNQ's virtual environment):
``python3 -m bhvit_driver validate`` (sample input against its expected logits, throughput,
accuracy on the bundled test set), ``... accuracy --dataset DIR``, ``... benchmark``,
``... classify a.png b.png``; ``--help`` for the options.
"""
from .accelerator import Accelerator, AcceleratorError, load_params  # noqa: F401
from .datasets import DatasetError, load_dataset  # noqa: F401
from .packing import InputError, pack_images, quantize, unpack_images, unpack_logits  # noqa: F401
