"""Atomic checkpoint I/O with clear errors for missing or corrupted files."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    pass


def atomic_write_bytes(path: Path, writer) -> None:
    """Write via a temporary file in the same folder, fsync, then rename: a
    crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(obj: dict, path: Path) -> None:
    atomic_write_bytes(path, lambda fh: torch.save(obj, fh))


def save_json(obj, path: Path) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(json.dumps(obj, indent=2).encode()))


def save_text(text: str, path: Path) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist. Train one with 'make train' or name an "
                              "existing file with CKPT=...")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, wrong format, pickling garbage, ...
        raise CheckpointError(
            f"checkpoint {path} is corrupted or not a checkpoint ({type(exc).__name__}: {str(exc)[:200]}). "
            "It was left untouched. Move it away (or choose another OUT=) to start afresh, or restore a "
            "good copy.") from None
    if not isinstance(obj, dict) or "model" not in obj or "config" not in obj:
        raise CheckpointError(f"checkpoint {path} lacks the 'model'/'config' entries of this project's "
                              "checkpoints. It was left untouched.")
    return obj


def model_from_checkpoint(path: Path):
    """Rebuild the network stored in a checkpoint and load its weights."""
    from .config import ConfigError, ViTConfig
    from .networks import HybridViT
    ck = load_checkpoint(path)
    try:
        cfg = ViTConfig.from_dict(ck["config"], source=f"the configuration stored in {path}")
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path} holds a configuration this version cannot build: {exc}") from None
    model = HybridViT(cfg)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match its own model config: {str(exc)[:300]}") from None
    return model, ck
