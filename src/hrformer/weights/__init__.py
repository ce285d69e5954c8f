"""Weights: reading checkpoint files, remapping the original layouts, downloading and publishing,
and loading state dicts into a model. Nothing here builds a model (that is :mod:`hrformer.factory`)."""

from ..errors import CheckpointError, CheckpointLayoutError, CheckpointReadError, WeightsUnavailableError
from .files import read_checkpoint, unwrap_state_dict
from .layouts import LAYOUTS, convert_original, detect_layout
from .loading import Checkpoint, fetch_pretrained, load_checkpoint, load_weights, read_weights
from .pretrained import PretrainedCfg, get_pretrained_cfg, list_pretrained, register_pretrained

__all__ = [
    "LAYOUTS", "CheckpointError", "CheckpointLayoutError", "CheckpointReadError", "PretrainedCfg",
    "WeightsUnavailableError", "convert_original", "detect_layout", "get_pretrained_cfg", "list_pretrained",
    "Checkpoint", "fetch_pretrained", "load_checkpoint", "load_weights", "read_weights", "read_checkpoint", "register_pretrained", "unwrap_state_dict",
]
