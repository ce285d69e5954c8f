"""hrformer: the High-Resolution Transformer (HRFormer, NeurIPS 2021) as a PyTorch backbone."""

from .config import ARCHS, HRFormerConfig
from .convert import CheckpointLayoutError, convert_original, from_original
from .model import HRFormer
from .registry import create_model, list_models

__version__ = "0.1.0"

__all__ = [
    "ARCHS", "CheckpointLayoutError", "HRFormer", "HRFormerConfig", "convert_original", "create_model",
    "from_original", "list_models", "__version__",
]
