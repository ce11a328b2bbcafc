"""What the hw command lines share: their common options and their inputs
(checkpoint, data, integer network), loaded with the errors users can act on."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .intnet import IntNet, QuantSpec


class HwInputError(RuntimeError):
    """A checkpoint, data set or integer model that cannot be used; the message says why."""


def add_common_args(p: argparse.ArgumentParser, intnet: bool = True) -> None:
    p.add_argument("--ckpt", required=True, help="trained checkpoint (model.pt)")
    if intnet:
        p.add_argument("--intnet", default=None,
                       help="integer model written by 'make golden' / 'make qat' (default: fold the checkpoint)")
    p.add_argument("--data", default=None, help="data set (default: the checkpoint's)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--act-bits", type=int, default=QuantSpec.act_bits, help="residual stream / activation width")
    p.add_argument("--calib", type=int, default=512, help="training images used to choose formats")
    p.add_argument("--calib-quantile", type=float, default=QuantSpec.calib_quantile,
                   help="range of each tensor = this quantile of |x| on the calibration images (1: max)")
    p.add_argument("--limit", type=int, default=0, help="first N test images for top-1 (0: all)")
    p.add_argument("--out", default=None, help="output folder (default build/<model>/<step>)")


@dataclass
class HwInputs:
    model: object
    name: str
    data: str
    train: object
    test: object
    net: IntNet
    out: Path


def spec_from_args(a) -> QuantSpec:
    return QuantSpec(act_bits=a.act_bits, lut_bits=min(a.act_bits, 12), calib_quantile=a.calib_quantile)


def load_inputs(a, step: str) -> HwInputs:
    """Checkpoint, train/test splits and the integer network (loaded, or folded
    from the checkpoint); creates the output folder build/<model>/<step>."""
    from model.checkpoint import CheckpointError, model_from_checkpoint
    from model.data import DataError, load_split

    from .intnet import IntNetError
    from .support import UnsupportedModelError, check_supported
    try:
        model, ck = model_from_checkpoint(a.ckpt)
        model.eval()
        check_supported(model.cfg, f"{a.ckpt} ({ck.get('model_name', 'model')})")
        data = a.data or ck.get("data", "fmnist")
        train = load_split(data, "train", a.data_dir, model.cfg.img_size)
        test = load_split(data, "test", a.data_dir, model.cfg.img_size)
        if getattr(a, "intnet", None):
            net = IntNet.load(a.intnet)
        else:
            print(f"[{step}] folding {a.ckpt} into the integer network ({a.calib} calibration images)")
            net = IntNet.from_model(model, train.images[:a.calib], train.mean, train.std, spec_from_args(a))
    except (CheckpointError, DataError, IntNetError, UnsupportedModelError) as exc:
        raise HwInputError(str(exc)) from None
    except (ValueError, NotImplementedError) as exc:   # e.g. binary weights that are not +-1
        raise HwInputError(f"the checkpoint cannot be lowered to hardware: {exc}") from None
    name = ck.get("model_name", "model")
    out = Path(a.out or f"build/{name}/{step}")
    out.mkdir(parents=True, exist_ok=True)
    return HwInputs(model, name, data, train, test, net, out)
