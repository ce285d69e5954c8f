"""hrformer: the High-Resolution Transformer (HRFormer, NeurIPS 2021) as a PyTorch backbone."""

from .checkpoint import CheckpointError, CheckpointLayoutError, CheckpointReadError
from .config import ARCHS, HRFormerConfig
from .convert import convert_original, from_original
from .hub import WeightsUnavailableError, push_to_hub, save_pretrained
from .model import HRFormer
from .profile import Profile, profile
from .pretrained import PretrainedCfg, get_pretrained_cfg
from .registry import create_model, from_pretrained, list_models
from .weights import load_weights

__version__ = "0.1.0"

__all__ = [
    "ARCHS", "CheckpointError", "CheckpointLayoutError", "CheckpointReadError", "HRFormer", "HRFormerConfig",
    "PretrainedCfg", "Profile", "WeightsUnavailableError", "convert_original", "create_model", "from_original",
    "from_pretrained", "get_pretrained_cfg", "list_models", "load_weights", "profile", "push_to_hub", "save_pretrained",
    "__version__",
]
