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
    p.add_argument("--act-bits", type=int, default=None,
                   help=f"residual stream / activation width (default {QuantSpec.act_bits}, widened by the "
                        "format check where the model needs it; set, it is kept)")
    p.add_argument("--calib", type=int, default=512, help="training images used to choose formats")
    p.add_argument("--calib-quantile", type=float, default=None,
                   help=f"range of each tensor = this quantile of |x| on the calibration images (1: max; "
                        f"default {QuantSpec.calib_quantile}, raised by the format check where needed)")
    p.add_argument("--format-check", type=int, default=1000, metavar="N",
                   help="held-back training images on which the folded network is compared with the float "
                        "model (formats widen where it loses more than --max-loss points; 0: no check)")
    p.add_argument("--max-loss", type=float, default=1.0,
                   help="top-1 points the integer network may lose against float before formats widen")
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
    formats: object = None      # hw.formats.FormatChoice of the fold's check (None: not checked)


def spec_from_args(a) -> QuantSpec:
    from .formats import spec_for
    return spec_for(a.act_bits or QuantSpec.act_bits,
                    QuantSpec.calib_quantile if a.calib_quantile is None else a.calib_quantile)


def load_inputs(a, step: str) -> HwInputs:
    """Checkpoint, train/test splits and the integer network (loaded, or folded
    from the checkpoint); creates the output folder build/<model>/<step>."""
    from model.checkpoint import CheckpointError, model_from_checkpoint
    from model.data import DataError, load_split

    from .formats import fold_checked
    from .intnet import IntNetError
    from .support import UnsupportedModelError, check_supported
    try:
        model, ck = model_from_checkpoint(a.ckpt)
        model.eval()
        check_supported(model.cfg, f"{a.ckpt} ({ck.get('model_name', 'model')})")
        data = a.data or ck.get("data", "fmnist")
        if not a.data_dir and data == ck.get("data"):       # the folder the model was trained from
            a.data_dir = (ck.get("args") or {}).get("data_dir")
        channels = model.cfg.in_chans
        check = getattr(a, "format_check", 0)
        train = load_split(data, "train", a.data_dir, model.cfg.img_size, channels, limit=a.calib + check)
        test = load_split(data, "test", a.data_dir, model.cfg.img_size, channels, limit=a.limit)
        formats = None
        if getattr(a, "intnet", None):
            net = IntNet.load(a.intnet)
        else:
            print(f"[{step}] folding {a.ckpt} into the integer network ({a.calib} calibration images)")
            net, formats = fold_checked(model, a.ckpt, train, a.calib, check, a.max_loss, a.act_bits,
                                        a.calib_quantile, cache_parts=dict(data=data, data_dir=str(a.data_dir)))
    except (CheckpointError, DataError, IntNetError, UnsupportedModelError) as exc:
        raise HwInputError(str(exc)) from None
    except (ValueError, NotImplementedError) as exc:   # e.g. binary weights that are not +-1
        raise HwInputError(f"the checkpoint cannot be lowered to hardware: {exc}") from None
    name = ck.get("model_name", "model")
    out = Path(a.out or f"build/{name}/{step}")
    out.mkdir(parents=True, exist_ok=True)
    return HwInputs(model, name, data, train, test, net, out, formats)
