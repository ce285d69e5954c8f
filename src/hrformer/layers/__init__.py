"""Building blocks of HRFormer, one file each."""

from .attention import LocalWindowAttention
from .checkpoint import checkpointed
from .conv_blocks import BasicBlock, Bottleneck
from .conv_norm_act import ConvNormAct
from .drop_path import DropPath
from .ffn import ConvFFN
from .fusion import DownsamplePath, Fusion, IdentityPath, SeparableDownsample, UpsamplePath
from .hr_module import HRModule
from .hrformer_block import HRFormerBlock
from .stage import Stage
from .stem import Stem
from .transition import Transition
from .window import (
    center_padding,
    crop_padding,
    pad_to_windows,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_unpartition,
)

__all__ = [
    "BasicBlock", "Bottleneck", "ConvFFN", "ConvNormAct", "DownsamplePath", "DropPath", "Fusion",
    "HRFormerBlock", "HRModule", "IdentityPath", "LocalWindowAttention", "SeparableDownsample", "Stage",
    "Stem", "Transition", "UpsamplePath", "center_padding", "checkpointed", "crop_padding", "pad_to_windows",
    "relative_position_index", "shifted_window_mask", "window_partition", "window_unpartition",
]
