"""The inference HRFormer block and its FFN: the reference submodules (and state-dict keys), run
without the module calls of their leaves; with the fast path on, the block runs on (B, H, W, C)
tokens, its attention on strided window views (:mod:`hrformer.fast.windows`): 18 ops per block with
the flash attention kernel, 23 with the explicit product."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv_norm_act import ConvNormAct
from ..layers.ffn import ConvFFN
from ..layers.hrformer_block import HRFormerBlock
from . import attention, kernels
from .attention import FusedWindowAttention
from .modules import FusedConvNormAct, FusedLinear, conv_norm_act
from .windows import WindowLayout, crop_view, merge_windows, partition_windows, split_heads, window_layout


class FusedConvFFN(nn.Module):
    """:class:`ConvFFN` whose three conv-GELU units (BatchNorm folded) run as kernel calls, not
    modules. Same submodules and state-dict keys.

    Shapes: (B, in_chs, H, W) -> (B, out_chs, H, W).
    """

    def __init__(self, fc1: nn.Module, dw: nn.Module, fc2: nn.Module) -> None:
        super().__init__()
        self.fc1, self.dw, self.fc2 = fc1, dw, fc2

    @classmethod
    def from_reference(cls, module: ConvFFN) -> "FusedConvFFN":
        return cls(*(_fused_unit(m) for m in (module.fc1, module.dw, module.fc2)))

    def forward(self, x: torch.Tensor, kernels_on: Optional[bool] = None) -> torch.Tensor:
        """``kernels_on``: :func:`kernels.active(x) <hrformer.fast.kernels.active>` where the caller
        has it (checked here otherwise)."""
        units = self._modules  # not self.fc1, ...: nn.Module's attribute fallback costs ~1 us per read
        # the same for the three units: no hook runs between them
        on = kernels.active(x) if kernels_on is None else kernels_on
        return conv_norm_act(units["fc2"], conv_norm_act(units["dw"], conv_norm_act(units["fc1"], x, on), on), on)

    def makes_new_output(self) -> bool:
        """Whether every output is a new tensor that nothing else holds (its last unit a fused one),
        which the block may add its residual into."""
        return type(self._modules["fc2"]) is FusedConvNormAct

    def forward_tokens(
        self, x: torch.Tensor, as_matmul: Optional[Tuple[bool, ...]] = None
    ) -> Tuple[torch.Tensor, Tuple[bool, ...]]:
        """:meth:`forward` on (B, H, W, C) tokens for a caller whose kernels are on, no layout change
        between the units: each 1x1 unit as a oneDNN matmul on the tokens where ``as_matmul`` (one
        flag per unit, a caller's kept choice) says so, the others on their channels-last view.
        Returns the (B, H, W, C_out) output and the flags, chosen here per unit
        (:meth:`FusedConvNormAct.matmul_faster`) when ``as_matmul`` is None."""
        units = self._modules
        if as_matmul is not None:
            return _tokens_unit(units["fc2"], _tokens_unit(units["dw"], _tokens_unit(
                units["fc1"], x, as_matmul[0]), as_matmul[1]), as_matmul[2]), as_matmul
        chosen = []
        for unit in (units["fc1"], units["dw"], units["fc2"]):
            chosen.append(type(unit) is FusedConvNormAct and unit.matmul_faster(x))
            x = _tokens_unit(unit, x, chosen[-1])
        return x, tuple(chosen)


def _tokens_unit(unit: nn.Module, x: torch.Tensor, as_matmul: bool) -> torch.Tensor:
    """``unit`` on (B, H, W, C) tokens: a fused unit as a matmul (``as_matmul``) or its convolution,
    any other module on the channels-last view."""
    kind = type(unit)
    if kind is FusedConvNormAct:
        return unit.forward_tokens(x, as_matmul)
    if kind is nn.Identity:
        return x
    return unit(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _fused_unit(module: nn.Module) -> nn.Module:
    return FusedConvNormAct.from_reference(module) if type(module) is ConvNormAct else module


class TokenPlan:
    """What :meth:`FusedHRFormerBlock.forward_tokens` works out once per input shape, dtype and pinned
    paths instead of on every call: the window layout (padding and the strided views' arguments), the
    attention product and whether each projection and 1x1 FFN unit runs as oneDNN's matmul (timed on
    the first call: None until then). It holds no tensor: the weights are read from the modules and
    the mask from the attention's own cache (which follows its bias table) on every call."""

    __slots__ = ("layout", "product", "qkv_onednn", "proj_onednn", "ffn_matmul")

    def __init__(self, layout: WindowLayout) -> None:
        self.layout = layout
        self.product: Optional[Callable[..., torch.Tensor]] = None
        self.qkv_onednn: Optional[bool] = None
        self.proj_onednn: Optional[bool] = None
        self.ffn_matmul: Optional[Tuple[bool, ...]] = None


# Plans kept per block: a model that takes images of many sizes makes them again beyond this.
MAX_PLANS = 16


class FusedHRFormerBlock(nn.Module):
    """:class:`HRFormerBlock` for inference: the same submodules and state-dict keys, without the
    stochastic-depth identities and the module calls of its leaves.

    With the fast path on (:func:`hrformer.fast.kernels.active`) and a :class:`FusedWindowAttention`
    without shifted windows, the block runs on (B, H, W, C) tokens (:meth:`forward_tokens`): the
    attention inline on strided views (the padded map partitioned into windows and the heads merged
    back with one copy each, the heads split as views, the output projection on the padded map before
    the crop: all per token, so the same arithmetic as the reference), the FFN on the tokens, with
    what depends only on the input's shape worked out once (:class:`TokenPlan`). Otherwise its
    submodules run as in the reference block.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, norm1: nn.Module, attn: nn.Module, norm2: nn.Module, ffn: nn.Module) -> None:
        super().__init__()
        self.norm1, self.attn, self.norm2, self.ffn = norm1, attn, norm2, ffn

    @classmethod
    def from_reference(cls, module: HRFormerBlock) -> "FusedHRFormerBlock":
        # The attention and the FFN are replaced in turn by fuse_for_inference's walk.
        return cls(module.norm1, module.attn, module.norm2, module.ffn)

    def __getstate__(self) -> Dict[str, Any]:
        # The plans are caches of this process (timings): not pickled or deep-copied.
        state = self.__dict__.copy()
        state.pop("_plans", None)
        return state

    def runs_on_tokens(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward_tokens` may run for ``x`` (kernels on, unshifted fused attention)."""
        attn = self._modules["attn"]
        return type(attn) is FusedWindowAttention and not attn.shift_size and kernels.active(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.runs_on_tokens(x):
            return self.forward_modules(x)
        return self.forward_tokens(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The block on (B, H, W, C) tokens -> (B, H, W, C), for a caller that checked
        :meth:`runs_on_tokens` (a branch of blocks checks once and keeps this layout between them)."""
        # Submodules read from the module dicts: nn.Module's attribute fallback costs ~1 us per read.
        modules = self._modules
        attn = modules["attn"]
        linears = attn._modules
        plan = self._plan(x, attn)
        layout = plan.layout
        t = _layer_norm(modules["norm1"], x)
        if layout.pad is not None:
            t = F.pad(t, layout.pad)
        windows = partition_windows(t, layout)
        if plan.qkv_onednn is None:
            plan.qkv_onednn = _onednn_faster(linears["qkv"], windows)
        q, key, v = split_heads(_linear(linears["qkv"], windows, plan.qkv_onednn), layout)
        b, h, w, _ = x.shape
        mask = attn.kept_mask(b, h, w, layout.pads, x.dtype, x.device)
        if plan.product is None:
            plan.product = attention.ATTENTION_PRODUCTS[attention.attention_product(q, key, v, mask)]
        merged = merge_windows(plan.product(q, key, v, mask), layout)
        if plan.proj_onednn is None:
            plan.proj_onednn = _onednn_faster(linears["proj"], merged)
        x = x + crop_view(_linear(linears["proj"], merged, plan.proj_onednn), layout)
        y = _layer_norm(modules["norm2"], x)
        ffn = modules["ffn"]
        if type(ffn) is FusedConvFFN:
            y, plan.ffn_matmul = ffn.forward_tokens(y, plan.ffn_matmul)
            # The residual added into the FFN's fresh output: no new buffer (x + y == y + x exactly).
            return y.add_(x) if ffn.makes_new_output() else x + y
        return x + ffn(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def _plan(self, x: torch.Tensor, attn: FusedWindowAttention) -> TokenPlan:
        plans = self.__dict__.get("_plans")
        if plans is None:
            plans = self.__dict__["_plans"] = {}
        key = (x.shape, x.dtype, kernels.matmul_path, attention.attention_path)
        plan = plans.get(key)
        if plan is None:
            if len(plans) >= MAX_PLANS:
                plans.clear()
            plan = plans[key] = TokenPlan(window_layout(x.shape, attn.window_size, attn.num_heads))
        return plan

    def forward_modules(self, x: torch.Tensor) -> torch.Tensor:
        """The reference block's forward on the fused submodules."""
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C) view
        x = x + self.attn(_layer_norm(self.norm1, x))
        y = self.ffn(_layer_norm(self.norm2, x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return (x + y).permute(0, 3, 1, 2)


def _layer_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if type(norm) is nn.LayerNorm:
        # torch.layer_norm, not F.layer_norm: the same op without the Python wrapper's checks
        return torch.layer_norm(x, norm.normalized_shape, *kernels.weight_and_bias(norm), norm.eps, False)
    return norm(x)


def _linear(lin: nn.Module, x: torch.Tensor, onednn: bool) -> torch.Tensor:
    """``lin(x)`` inside a fused block whose kernels are on, contiguous (the strided views read it);
    ``onednn``: its kept choice."""
    return kernels.linear(x, lin, onednn) if type(lin) is FusedLinear else lin(x).contiguous()


def _onednn_faster(lin: nn.Module, x: torch.Tensor) -> bool:
    return type(lin) is FusedLinear and kernels.onednn_linear_faster(x, lin)
