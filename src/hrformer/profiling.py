"""Parameter and multiply-accumulate counts, measured with torch's own flop counter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Sequence, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .errors import InputError
from .layers.attention import LocalWindowAttention

_ATTENTION_OPS = ("_scaled_dot_product", "bmm", "baddbmm", "flash_attention", "efficient_attention")
_LINEAR_OPS = ("mm", "addmm")


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # torch's counter has no formula for the CPU flash kernel: 2 matmuls, 2 flops per MAC each.
    *batch, q_len, head_dim = query_shape
    k_len, v_dim = key_shape[-2], value_shape[-1]
    b = 1
    for d in batch:
        b *= d
    return 2 * b * q_len * k_len * head_dim + 2 * b * q_len * k_len * v_dim


def _custom_mapping() -> Dict:
    ops = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        def formula(query, key, value, *args, out_shape=None, **kwargs):
            return _sdpa_cpu_flops(query, key, value)

        ops[op] = formula
    return ops


@dataclass
class Profile:
    """Counts for one forward pass at batch 1."""

    params: int
    macs: int
    macs_by_op: Dict[str, int] = field(default_factory=dict)
    input_size: Sequence[int] = ()

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v / 1e9:.3f}" for k, v in self.macs_by_op.items())
        return f"params {self.params / 1e6:.3f} M, {self.gmacs:.3f} GMACs ({parts}) at {tuple(self.input_size)}"


def count_params(model: nn.Module) -> int:
    """Trainable parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def profile(model: nn.Module, input_size: Union[int, Sequence[int]] = (224, 224)) -> Profile:
    """Parameters and multiply-accumulates of ``model`` on a (1, C, H, W) input.

    MACs are torch's :class:`FlopCounterMode` flops / 2, split into ``conv``, ``linear`` (matrix
    products of linear layers) and ``attention`` (the two attention matmuls, padded window tokens
    included). Element-wise work (norms, activations, softmax, interpolation) is not counted.
    """
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) == 2:
        input_size = (getattr(model, "in_chans", 3),) + input_size
    if len(input_size) != 3:
        raise InputError(f"input_size must be (H, W) or (C, H, W), got {input_size}")
    param = next(model.parameters())
    x = torch.zeros((1,) + input_size, dtype=param.dtype, device=param.device)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    by_op = {"conv": 0, "linear": 0, "attention": 0}
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        name = str(op).split(".")[-1]
        if "conv" in name:
            by_op["conv"] += flops // 2
        elif any(a in name for a in _ATTENTION_OPS):
            by_op["attention"] += flops // 2
        elif name in _LINEAR_OPS:
            by_op["linear"] += flops // 2
        else:
            by_op[name] = by_op.get(name, 0) + flops // 2
    return Profile(params=count_params(model), macs=sum(by_op.values()), macs_by_op=by_op, input_size=input_size)


def paper_pose_gflops(model: nn.Module, input_size: Union[int, Sequence[int]] = (256, 192)) -> float:
    """GMACs by the convention that reproduces the paper's pose numbers within 2%: convolutions plus
    linear layers, the attention projections counted on the unpadded tokens; attention matmuls,
    norms and element-wise work not counted (the paper calls these MACs "GFLOPs")."""
    padded = unpadded = 0

    def hook(module: LocalWindowAttention, args, out) -> None:
        nonlocal padded, unpadded
        b, h, w, _ = args[0].shape
        k = module.window_size
        per_token = sum(lin.in_features * lin.out_features for lin in (module.qkv, module.proj))
        unpadded += b * h * w * per_token
        padded += b * (-(-h // k) * k) * (-(-w // k) * k) * per_token

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, LocalWindowAttention)]
    try:
        counts = profile(model, input_size)
    finally:
        for handle in handles:
            handle.remove()
    return (counts.macs_by_op["conv"] + counts.macs_by_op["linear"] - padded + unpadded) / 1e9
