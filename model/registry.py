"""Registry of named models (timm style): ``create_model(name, **overrides)``.

The 224x224 entries reproduce the BHViT / BinaryViT reference code with the
options of its published run script (BN in place of LN on the residual stream,
both shift modules, LSQ attention quantizer, the 7x7/pad-3 token pooling,
no input inside the MSGDC RPReLU).  The ``*_paper`` flavour and the small
models follow the paper.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

from .config import ConfigError, ViTConfig
from .networks import HybridViT

_REFERENCE = dict(attn_quant="lsq", pool_pad_quirk=True, msgdc_input_in_rprelu=False)

_CONFIGS: Dict[str, ViTConfig] = {}


def register(name: str, cfg: ViTConfig) -> None:
    if name in _CONFIGS:
        raise ValueError(f"model '{name}' registered twice")
    _CONFIGS[name] = cfg


def _bhvit(depths, **kw) -> ViTConfig:
    return ViTConfig(arch="bhvit", depths=depths, **kw)


# ImageNet models, reference-code flavour (exact parameter counts of the released code).
register("bhvit_tiny", _bhvit((2, 2, 6, 2), **_REFERENCE))
register("bhvit_small", _bhvit((3, 4, 8, 4), **_REFERENCE))
# The same networks as the paper defines them.
register("bhvit_tiny_paper", _bhvit((2, 2, 6, 2)))
register("bhvit_small_paper", _bhvit((3, 4, 8, 4)))
register("binaryvit_small", ViTConfig(
    arch="binaryvit", depths=(3, 4, 8, 4), heads=(1, 2, 4, 8), kv_reduction=(8, 4, 1, 1),
    attn_quant="bit", stem_gelu=False))

# Board-sized models for 32x32 inputs (Fashion-MNIST is zero-padded from 28x28
# to 32x32, CIFAR-10 is native).  Why these numbers:
#  * stem patch 2 -> stage maps 16, 8, 4, 2: each stage map divides evenly,
#    which keeps every kernel of the dataflow free of ragged edges;
#  * channels 32-64-128-256 and one block per stage: 902,912 binary weight bits,
#    24.5 RAMB36 of the xc7z020's 140, so weights stay on chip with room for
#    parallel (PE/SIMD) unfolding;
#  * MSMHA window 4 at stage 3 (one window + 1 pooled token) and 2 at stage 4
#    (one window + 1 pooled token), head dim 32 -> at most 33 distinct Q K^T
#    scores, so the softmax exp is a 33-entry table;
#  * MLP ratios 4, 4, 2, 2 (the paper's 8, 8, 4, 4 halved) keep the widest
#    binary layer at 512 inputs.
_PYNQ = dict(img_size=32, stem_patch=2, dims=(32, 64, 128, 256),
             mlp_ratios=(4, 4, 2, 2), heads=(1, 1, 4, 8), window=(4, 4, 4, 2), pool_kernel=(4, 4, 4, 2),
             downsample="binary")
register("bhvit_pynq_fmnist", _bhvit((1, 1, 1, 1), **{**_PYNQ, "in_chans": 1, "num_classes": 10}))
register("bhvit_pynq_cifar10", _bhvit((1, 1, 1, 1), **{**_PYNQ, "in_chans": 3, "num_classes": 10}))
# Full-precision teacher of the same shape, trained by the same command.
register("bhvit_pynq_fmnist_fp", _bhvit((1, 1, 1, 1), **{**_PYNQ, "in_chans": 1, "num_classes": 10,
                                                          "binary": False, "downsample": "fp"}))
register("bhvit_pynq_cifar10_fp", _bhvit((1, 1, 1, 1), **{**_PYNQ, "in_chans": 3, "num_classes": 10,
                                                           "binary": False, "downsample": "fp"}))
# BinaryViT at board size: the baseline's pyramid on the same stage maps, channels, MLP ratios
# and binary downsampling as bhvit_pynq_fmnist; global attention in every stage, heads 1-2-4-8
# (head dimension 32), keys and values from 4x4 / 2x2 average-pooled tokens in stages 1-2
# (16 keys each, as the 224x224 model's reduction 8 / 4 leaves 49 / 49), no stem GELU, its
# attention quantiser c * clip(round(A / c), 0, 1), its four zero-padded pooling branches.
_PYNQ_BINARYVIT = dict(arch="binaryvit", img_size=32, stem_patch=2, dims=(32, 64, 128, 256), depths=(1, 1, 1, 1),
                       mlp_ratios=(4, 4, 2, 2), heads=(1, 2, 4, 8), kv_reduction=(4, 2, 1, 1), attn_quant="bit",
                       stem_gelu=False, downsample="binary", in_chans=1, num_classes=10)
register("binaryvit_pynq_fmnist", ViTConfig(**_PYNQ_BINARYVIT))
register("binaryvit_pynq_fmnist_fp", ViTConfig(**{**_PYNQ_BINARYVIT, "binary": False, "downsample": "fp"}))


class UnknownModelError(KeyError):
    def __str__(self):
        return self.args[0]


def list_models():
    return sorted(_CONFIGS)


def get_config(name: str, **overrides) -> ViTConfig:
    if name not in _CONFIGS:
        raise UnknownModelError(f"unknown model '{name}'. Known models: {', '.join(list_models())}")
    return _CONFIGS[name].replace(**overrides) if overrides else _CONFIGS[name]


def config_from_file(path) -> ViTConfig:
    """A configuration from a JSON or YAML file: ViTConfig's fields, and optionally "base", a
    registered model whose configuration the file changes (without it, the fields left out keep
    the dataclass defaults, ImageNet-sized).  A missing or unreadable file, or a bad field, is a
    ConfigError that says so."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", str(path), f"configuration file {path} does not exist")
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    try:
        if is_yaml:
            import yaml
            data = yaml.safe_load(path.read_text())
        else:
            data = json.loads(path.read_text())
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise ConfigError("", str(path), f"{path} is not valid {'YAML' if is_yaml else 'JSON'}: {exc}") from None
    if isinstance(data, dict) and "base" in data:
        data = dict(data)
        base = data.pop("base")
        if not isinstance(base, str) or base not in _CONFIGS:
            raise ConfigError("base", base, f"must be a registered model: {', '.join(list_models())}")
        data = {**_CONFIGS[base].to_dict(), **data}
    return ViTConfig.from_dict(data, source=str(path))


def resolve_model(model: str | None = None, config=None, float_teacher: bool = False) -> tuple:
    """(name, ViTConfig) of ``--model NAME`` (a registered entry) or ``--config FILE`` (JSON or YAML;
    the name is the file's stem).  ``float_teacher``: the full-precision network of the same shape
    that `make train` distils from (binary=False, FP downsampling; name + "_fp")."""
    if config:
        name, cfg = Path(config).stem, config_from_file(config)
    else:
        name, cfg = model, get_config(model)
    if float_teacher:
        name, cfg = name + "_fp", cfg.replace(binary=False, downsample="fp")
    return name, cfg


def create_model(name_or_cfg, **overrides) -> HybridViT:
    cfg = name_or_cfg if isinstance(name_or_cfg, ViTConfig) else get_config(name_or_cfg, **overrides)
    return HybridViT(cfg)
