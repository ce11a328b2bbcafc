"""PyTorch/Brevitas models of BHViT and BinaryViT (stage 1 of the pipeline)."""
from .config import ViTConfig
from .networks import HybridViT, count_parameters
from .registry import UnknownModelError, create_model, get_config, list_models

__all__ = ["ViTConfig", "HybridViT", "count_parameters", "create_model", "get_config", "list_models",
           "UnknownModelError"]
