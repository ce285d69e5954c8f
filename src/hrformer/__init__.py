"""hrformer: the High-Resolution Transformer (HRFormer, NeurIPS 2021) as a PyTorch backbone."""

from .config import ARCHS, HRFormerConfig
from .errors import (
    CheckpointError,
    CheckpointLayoutError,
    CheckpointReadError,
    ConfigError,
    HRFormerError,
    InputError,
    InputTypeError,
    ResourceLimitError,
    WeightsUnavailableError,
)
from .factory import (
    create_model,
    from_original,
    from_pretrained,
    list_models,
    push_to_hub,
    save_pretrained,
)
from .data_config import resolve_data_config
from .export import export_onnx
from .fast import fuse_for_inference, keep_freed_memory, set_fast_path
from . import classification, pose, segmentation  # hrformer.pose.predict etc. after a plain `import hrformer`
from .classification import create_transform
from .model import HRFormer
from .profiling import Profile, profile
from .weights import (
    PretrainedCfg,
    convert_original,
    get_pretrained_cfg,
    load_weights,
)

__version__ = "0.1.0"

__all__ = [
    "ARCHS", "CheckpointError", "CheckpointLayoutError", "CheckpointReadError", "ConfigError", "HRFormer",
    "HRFormerConfig", "HRFormerError", "InputError", "InputTypeError", "PretrainedCfg",
    "ResourceLimitError", "Profile", "WeightsUnavailableError", "classification", "convert_original",
    "create_model", "create_transform", "export_onnx", "from_original", "from_pretrained", "fuse_for_inference",
    "get_pretrained_cfg", "keep_freed_memory", "list_models", "load_weights", "pose", "profile", "push_to_hub", "resolve_data_config",
    "save_pretrained", "segmentation", "set_fast_path", "__version__",
]
