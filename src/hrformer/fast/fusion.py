"""The inference fusion across resolutions: the reference paths (and state-dict keys), run as kernel
calls instead of five module calls per separable downsampling step."""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.fusion import DownsamplePath, Fusion, IdentityPath, SeparableDownsample
from . import kernels
from .modules import FusedConvNormAct, FusedUpsamplePath, conv_norm_act


class FusedFusion(nn.Module):
    """:class:`Fusion` for inference, the same submodules and state-dict keys, whose paths run without module calls where they are the fused modules (1x1
    convolution + upsampling, chains of depth-wise + point-wise steps, identities); any other path
    module is called as in the reference. Hooks on the paths and their convolutions do not run.

    Shapes: list of (B, C_j, H_j, W_j) -> list of ``num_outputs`` maps (B, C_i, H_i, W_i).
    """

    def __init__(self, paths: nn.ModuleList, act: nn.Module) -> None:
        super().__init__()
        self.paths, self.act = paths, act

    @classmethod
    def from_reference(cls, module: Fusion) -> "FusedFusion":
        # The paths are replaced in turn by fuse_for_inference's walk.
        return cls(module.paths, module.act)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        modules = self._modules  # not self.paths: nn.Module's attribute fallback costs ~1 us per read
        relu = type(modules["act"]) is nn.ReLU
        on = kernels.active(xs[0])  # the same for every path: no hook runs between them
        outs = []
        for i, paths in enumerate(modules["paths"]._modules.values()):
            size = (xs[i].shape[-2], xs[i].shape[-1])
            paths = list(paths._modules.values())
            y = _run_path(paths[0], xs[0], size, on)
            for k, (path, x) in enumerate(zip(paths[1:], xs[1:])):
                term = _run_path(path, x, size, on)
                # After the first sum y is a new tensor of this loop: with the kernels on (no
                # autograd) the next terms and the ReLU go into it, no new buffers, same values.
                y = y.add_(term) if on and k else y + term
            fresh = on and len(paths) > 1
            outs.append((y.relu_() if fresh else F.relu(y)) if relu else modules["act"](y))
        return outs


def _run_path(path: nn.Module, x: torch.Tensor, size: Tuple[int, int], kernels_on: bool) -> torch.Tensor:
    kind = type(path)
    if kind is IdentityPath:
        return x
    if kind is FusedUpsamplePath:
        return path.forward(x, size)
    if kind is DownsamplePath:
        for step in path._modules.values():
            units = step._modules
            if type(step) is not SeparableDownsample or type(units["dw"]) is not FusedConvNormAct:
                x = step(x)
            else:
                x = conv_norm_act(units["pw"], conv_norm_act(units["dw"], x, kernels_on), kernels_on)
        return x
    return path(x, size)
