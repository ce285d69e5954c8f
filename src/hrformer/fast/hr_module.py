"""The inference multi-resolution module: each branch of fused transformer blocks runs on (B, H, W, C)
tokens from its first block to its last, without a layout change or a module call between blocks."""

from __future__ import annotations

from typing import List

import torch
from torch import nn
from torch.nn.modules import module as _module

from ..layers.hr_module import HRModule
from .block import FusedHRFormerBlock

# nn.Module's global hooks (torch.nn.modules.module.register_module_forward_hook, ...), forward,
# forward-pre, backward, backward-pre: while any is registered, blocks are called as modules so that
# it runs. Read by name: None if one is absent (another torch), and every branch is called as a module.
_HOOK_DICTS = [getattr(_module, name, None) for name in (
    "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks",
)]
GLOBAL_HOOKS = None if any(hooks is None for hooks in _HOOK_DICTS) else tuple(_HOOK_DICTS)


class FusedHRModule(nn.Module):
    """:class:`HRModule` for inference: the same submodules and state-dict keys. A branch that is a
    sequence of :class:`FusedHRFormerBlock` s runs on the (B, H, W, C) view of its input, block after
    block through :meth:`FusedHRFormerBlock.forward_tokens`, when every block may run on tokens and
    nothing hooks the branch or its blocks; any other branch is called as in the reference.

    Shapes: list of (B, C_i, H_i, W_i) -> list of ``fusion`` outputs.
    """

    def __init__(self, branches: nn.ModuleList, fusion: nn.Module) -> None:
        super().__init__()
        self.branches = branches
        self.fusion = fusion

    @classmethod
    def from_reference(cls, module: HRModule) -> "FusedHRModule":
        # The blocks and the fusion are replaced in turn by fuse_for_inference's walk.
        return cls(module.branches, module.fusion)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        modules = self._modules  # not self.branches: nn.Module's attribute fallback costs ~1 us per read
        return modules["fusion"]([run_branch(branch, x) for branch, x in zip(modules["branches"]._modules.values(), xs)])


def run_branch(branch: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``branch(x)``: on tokens from its first block to its last where it is a sequence of fused
    blocks that may all run on tokens for ``x`` and none is hooked, else as a module call."""
    blocks = list(branch._modules.values()) if type(branch) is nn.Sequential else []
    if not blocks or not _unhooked(branch) or not all(
            type(block) is FusedHRFormerBlock and _unhooked(block) and block.runs_on_tokens(x) for block in blocks):
        return branch(x)
    tokens = x.permute(0, 2, 3, 1)
    for block in blocks:
        tokens = block.forward_tokens(tokens)
    return tokens.permute(0, 3, 1, 2)


def _unhooked(module: nn.Module) -> bool:
    """Whether calling ``module`` would run no hook (its own or a global one)."""
    return GLOBAL_HOOKS is not None and not (
        module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks
        or any(GLOBAL_HOOKS))
