"""Inference modules that :func:`hrformer.fast.fuse_for_inference` puts in place of the reference layers.

Each is built from a reference module by ``from_reference`` (BatchNorm folded into the convolution,
the other parameters shared) and calls :mod:`hrformer.fast.kernels`, which fall back to the public
ops wherever a kernel may not run. Outputs equal the reference layers' to about 1e-6 relative.
State-dict keys are the reference's, less the folded BatchNorms.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..layers.attention import LocalWindowAttention
from ..layers.conv_blocks import BasicBlock, Bottleneck
from ..layers.conv_norm_act import ConvNormAct
from ..layers.ffn import ConvFFN
from ..layers.fusion import UpsamplePath, upsample
from ..layers.hrformer_block import HRFormerBlock
from . import kernels

EXPLICIT_MAX_BYTES = 16 << 20


@torch.no_grad()
def folded_conv(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """A new convolution computing ``bn(conv(x))`` for an eval-mode BatchNorm ``bn`` (``conv`` itself
    when ``bn`` is not a BatchNorm). Folded in the weights' dtype."""
    if not isinstance(bn, nn.BatchNorm2d):
        return conv
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype,
    )
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.eval()


class FusedConvNormAct(nn.Module):
    """``act(conv(x))``, the BatchNorm of a :class:`ConvNormAct` folded into ``conv``; one oneDNN
    kernel where allowed.

    Shapes: (B, in_chs, H, W) -> (B, out_chs, H', W').
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.act = act

    @classmethod
    def from_reference(cls, module: ConvNormAct) -> "FusedConvNormAct":
        return cls(folded_conv(module.conv, module.bn), module.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attr = kernels.onednn_attr(self.act)
        if attr is None:
            return self.act(self.conv(x))
        return kernels.conv_act(x, self.conv, attr)


def conv_norm_act(unit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``unit(x)`` for a :class:`FusedConvNormAct` (or an identity) without the module call: the
    fused FFN's three units cost one Python call each instead of three."""
    if type(unit) is FusedConvNormAct:
        attr = kernels.onednn_attr(unit.act)
        if attr is not None:
            return kernels.conv_act(x, unit.conv, attr)
    return unit(x)


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_norm_act(self.fc2, conv_norm_act(self.dw, conv_norm_act(self.fc1, x)))


def _fused_unit(module: nn.Module) -> nn.Module:
    return FusedConvNormAct.from_reference(module) if type(module) is ConvNormAct else module


class FusedUpsamplePath(FusedConvNormAct):
    """:class:`UpsamplePath` with its BatchNorm folded: the 1x1 convolution as a kernel call, then the
    same upsampling.

    Shapes: (B, in_chs, h, w) -> (B, out_chs, H, W) for a target size (H, W).
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module, scale: int, mode: str) -> None:
        super().__init__(conv, act)
        self.scale, self.mode = scale, mode

    @classmethod
    def from_reference(cls, module: UpsamplePath) -> "FusedUpsamplePath":
        return cls(folded_conv(module.conv, module.bn), module.act, module.scale, module.mode)

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        return upsample(super().forward(x), self.scale, self.mode, size)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mode={self.mode}"


class FusedHRFormerBlock(nn.Module):
    """:class:`HRFormerBlock` for inference: the same submodules and state-dict keys, without the
    stochastic-depth identities, LayerNorm computed in place of a module call.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, norm1: nn.Module, attn: nn.Module, norm2: nn.Module, ffn: nn.Module) -> None:
        super().__init__()
        self.norm1, self.attn, self.norm2, self.ffn = norm1, attn, norm2, ffn

    @classmethod
    def from_reference(cls, module: HRFormerBlock) -> "FusedHRFormerBlock":
        attn = module.attn
        if type(attn) is LocalWindowAttention:
            attn = FusedWindowAttention.from_reference(attn)
        ffn = FusedConvFFN.from_reference(module.ffn) if type(module.ffn) is ConvFFN else module.ffn
        return cls(module.norm1, attn, module.norm2, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C) view
        x = x + self.attn(_layer_norm(self.norm1, x))
        return (x + self.ffn(_layer_norm(self.norm2, x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _layer_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if type(norm) is nn.LayerNorm:
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return norm(x)


class FusedBottleneck(nn.Module):
    """:class:`Bottleneck` with its last convolution, residual add and ReLU as one kernel.

    Shapes: (B, in_chs, H, W) -> (B, 4 * planes, H, W).
    """

    def __init__(
        self, conv1: FusedConvNormAct, conv2: FusedConvNormAct, conv3: FusedConvNormAct, downsample: nn.Module
    ) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = conv1, conv2, conv3
        self.downsample = downsample

    @classmethod
    def from_reference(cls, module: Bottleneck) -> "FusedBottleneck":
        convs = [FusedConvNormAct.from_reference(c) for c in (module.conv1, module.conv2, module.conv3)]
        shortcut = module.downsample
        return cls(*convs, FusedConvNormAct.from_reference(shortcut) if isinstance(shortcut, ConvNormAct) else shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.conv_add_act(self.conv2(self.conv1(x)), self.downsample(x), self.conv3.conv, "relu")


class FusedBasicBlock(nn.Module):
    """:class:`BasicBlock` with its second convolution, residual add and ReLU as one kernel.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, conv1: FusedConvNormAct, conv2: FusedConvNormAct) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv1, conv2

    @classmethod
    def from_reference(cls, module: BasicBlock) -> "FusedBasicBlock":
        return cls(FusedConvNormAct.from_reference(module.conv1), FusedConvNormAct.from_reference(module.conv2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.conv_add_act(self.conv1(x), x, self.conv2.conv, "relu")


class FusedLinear(nn.Linear):
    """:class:`torch.nn.Linear` through oneDNN's matmul where it pays."""

    @classmethod
    def from_reference(cls, module: nn.Linear) -> "FusedLinear":
        fused = cls(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
        fused.weight, fused.bias = module.weight, module.bias  # shared, not copied
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.linear(x, self)


# Which product the fused window attention runs. ATen's CPU flash kernel and the explicit
# matmul-softmax-matmul win on different CPUs and shapes: explicit 1.3-2.4x faster on AMD EPYC (AVX2;
# AVX-512 with BF16), the flash kernel 4-9% faster on Intel Xeons with AVX-512 / AMX. "auto" times both
# once per shape and dtype and keeps the faster; "explicit" / "flash" pin one (HRFORMER_ATTENTION).
ATTENTION_ENV_VAR = "HRFORMER_ATTENTION"
ATTENTION_PATHS = ("auto", "explicit", "flash")


def attention_path_from_environment() -> str:
    path = os.environ.get(ATTENTION_ENV_VAR, "auto").strip().lower()
    if path not in ATTENTION_PATHS:
        raise InputError(f"{ATTENTION_ENV_VAR}={path!r}: expected one of {ATTENTION_PATHS}")
    return path


attention_path = attention_path_from_environment()

# (q shape, dtype, mask shape) -> whether the explicit product measured faster than the flash kernel.
_explicit_faster: Dict[Tuple, bool] = {}


def explicit_attention(q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd) + mask) v as three products, the scores in place."""
    attn = torch.matmul(q, key.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)
    if mask is not None:
        attn = attn.add_(mask)
    return torch.matmul(attn.softmax(-1), v)


def flash_attention(q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, key, v, attn_mask=mask)


def _faster(candidates: Tuple[Callable[[], torch.Tensor], ...], rounds: int = 3) -> int:
    """Index of the candidate with the shortest best-of-``rounds`` time, timed alternately after one
    warm-up call each."""
    best = [float("inf")] * len(candidates)
    for run in candidates:
        run()
    for _ in range(rounds):
        for i, run in enumerate(candidates):
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return best.index(min(best))


def explicit_pays(q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> bool:
    """Whether the explicit product should replace the flash kernel for these (B*nW, heads, N, hd)
    windows: on CPU, while the (B*nW, heads, N, N) scores stay within a few MB, where it measured
    faster (``attention_path``)."""
    b, heads, n, _ = q.shape
    if q.device.type != "cpu" or b * heads * n * n * q.element_size() > EXPLICIT_MAX_BYTES:
        return False
    if attention_path != "auto":
        return attention_path == "explicit"
    shape = (q.shape, q.dtype, None if mask is None else mask.shape)
    faster = _explicit_faster.get(shape)
    if faster is None:
        faster = _explicit_faster[shape] = _faster((
            lambda: explicit_attention(q, key, v, mask), lambda: flash_attention(q, key, v, mask),
        )) == 0
    return faster


class FusedWindowAttention(LocalWindowAttention):
    """Window attention whose relative position bias is gathered from the table once per version of
    the table (not per call), and, on AVX2 CPUs with the fast path on, the explicit softmax where it
    beats the flash kernel.

    The gathered bias is a cache, never state: it is gathered again whenever the table is another
    tensor or was changed in place since (``load_state_dict``, ``table.mul_(2)`` under ``no_grad``,
    an optimizer step: all bump the tensor's version counter), or moved to another device or dtype.
    Edits through ``table.data`` bypass the version counter and are not seen. Traced and compiled
    graphs gather from the table, as the reference layer.
    """

    # (table, its version counter, its data pointer) when the cached bias was gathered.
    _bias_key: Optional[Tuple[torch.Tensor, int, int]] = None
    _bias: Optional[torch.Tensor] = None

    @classmethod
    def from_reference(cls, module: LocalWindowAttention) -> "FusedWindowAttention":
        # Built as a new layer, then every tensor taken from ``module`` (shared, not copied). Not on
        # the meta device: initialising the bias table there costs seconds of decompositions.
        fused = cls(
            module.dim, module.num_heads, window_size=module.window_size, rel_pos_bias=module.rel_pos_bias,
            mask_padding=module.mask_padding, shift_size=module.shift_size, qkv_bias=module.qkv.bias is not None,
            attn_drop=module.attn_drop, proj_drop=module.proj_drop.p,
        )
        fused.qkv = FusedLinear.from_reference(module.qkv)
        fused.proj = FusedLinear.from_reference(module.proj)
        fused.proj_drop = nn.Identity()  # fused models run in eval mode only
        if module.rel_pos_bias:
            fused.relative_position_bias_table = module.relative_position_bias_table
            fused.relative_position_index = module.relative_position_index
        return fused.train(module.training)

    def relative_position_bias(self) -> torch.Tensor:
        table = self.relative_position_bias_table
        if kernels.tracing():
            return super().relative_position_bias()
        key = self._bias_key
        if key is None or key[0] is not table or key[1] != table._version or key[2] != table.data_ptr():
            # Gathered without autograd and outside inference mode, so the cache serves any later call.
            with torch.inference_mode(False), torch.no_grad():
                self._bias = super().relative_position_bias().contiguous()
            self._bias_key = (table, table._version, table.data_ptr())
            self.__dict__["_masks"] = {}
        return self._bias

    def attention_mask(
        self, batch: int, height: int, width: int, pads: Tuple[int, int, int, int], dtype: torch.dtype,
        device: torch.device,
    ) -> Optional[torch.Tensor]:
        """The reference layer's mask, kept per input size (a few small tensors per model): built
        again after the bias table changed."""
        if kernels.tracing():
            return super().attention_mask(batch, height, width, pads, dtype, device)
        if self.rel_pos_bias:
            self.relative_position_bias()  # forgets the masks when the table changed
        masks = self.__dict__.setdefault("_masks", {})
        shape = (batch, height, width, dtype, device)
        if shape not in masks:
            if len(masks) >= 16:
                masks.clear()
            with torch.inference_mode(False), torch.no_grad():
                masks[shape] = super().attention_mask(batch, height, width, pads, dtype, device)
        return masks[shape]

    def attend(
        self, q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        # The switch (HRFORMER_FAST_PATH=0, set_fast_path(False)) sends it through the reference path too.
        if self.training or not kernels.active(q) or not explicit_pays(q, key, v, mask):
            return super().attend(q, key, v, mask)
        return explicit_attention(q, key, v, mask)
