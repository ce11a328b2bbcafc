"""Whole networks: stem -> 4 stages of blocks with downsampling between them -> head."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import Block, Downsample, Head, Stem
from .config import ViTConfig


class HybridViT(nn.Module):
    """BHViT or BinaryViT, depending on ``cfg.arch``."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = Stem(cfg)
        self.stages = nn.ModuleList(
            nn.Sequential(*[Block(cfg, s) for _ in range(cfg.depths[s])]) for s in range(len(cfg.dims)))
        self.downsamples = nn.ModuleList(Downsample(cfg, s) for s in range(len(cfg.dims) - 1))
        self.head = Head(cfg)
        self.apply(_init_weights)

    def forward_features(self, img: torch.Tensor) -> torch.Tensor:
        x = self.stem(img)
        for s, stage in enumerate(self.stages):
            x = stage(x)
            if s < len(self.downsamples):
                x = self.downsamples[s](x)
        return x

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(img))


@torch.no_grad()
def _init_weights(m: nn.Module):
    # As the reference (timm ViT init): every Linear, binary ones included,
    # gets trunc_normal(0.02) and zero bias.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
