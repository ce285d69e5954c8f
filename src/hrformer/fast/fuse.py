"""``fuse_for_inference``: fold every BatchNorm, put the inference modules in place of the reference
layers, optionally cast to bf16."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

import torch
from torch import nn

from ..errors import InputError
from ..heads.ocr import OCRHead
from ..layers.attention import LocalWindowAttention
from ..layers.conv_blocks import BasicBlock, Bottleneck
from ..layers.conv_norm_act import ConvNormAct
from ..layers.ffn import ConvFFN
from ..layers.fusion import Fusion, UpsamplePath
from ..layers.hr_module import HRModule
from ..layers.hrformer_block import HRFormerBlock
from . import attention, cpu, kernels
from .replay import OpReplays
from .attention import FusedWindowAttention
from .block import FusedConvFFN, FusedHRFormerBlock
from .fusion import FusedFusion
from .hr_module import FusedHRModule
from .modules import FusedBasicBlock, FusedBottleneck, FusedConvNormAct, FusedUpsamplePath, folded_conv

logger = logging.getLogger("hrformer")

M = TypeVar("M", bound=nn.Module)

# Reference layer -> the inference module built from it (``from_reference``), by exact class.
# Subclasses of these (e.g. a ConvNormAct with another forward) keep their class: their BatchNorm is
# folded in place.
FUSED_MODULES: Dict[type, Any] = {
    ConvNormAct: FusedConvNormAct,
    UpsamplePath: FusedUpsamplePath,
    Bottleneck: FusedBottleneck,
    BasicBlock: FusedBasicBlock,
    HRFormerBlock: FusedHRFormerBlock,
    LocalWindowAttention: FusedWindowAttention,
    ConvFFN: FusedConvFFN,
    Fusion: FusedFusion,
    HRModule: FusedHRModule,
}


@dataclass(frozen=True)
class FusedState:
    """What :func:`fuse_for_inference` changed at the level of an :class:`hrformer.HRFormer`
    (``model.fused``; None for a model that was not fused): its forward runs the oneDNN kernels for
    finite inputs and refuses ``train()``.

    ``casts_inputs``: fused with ``dtype=`` (bf16): float32 inputs are cast to the parameters' dtype
    at the model's entry and its outputs back to float32 at its exit.
    """

    casts_inputs: bool = False
    # The ops of the backbone's forward, replayed per kind of input (hrformer.fast.replay): a cache,
    # neither compared, pickled nor copied.
    replays: OpReplays = field(default_factory=OpReplays, compare=False, repr=False)

    def run_backbone(
        self, forward: Callable[[torch.Tensor], List[torch.Tensor]], x: torch.Tensor,
        roots: Sequence[Tuple[nn.Module, str, nn.Module]],
    ) -> List[torch.Tensor]:
        """``forward(x)`` (the backbone's, on the module trees ``roots``), replayed where its kernels run
        (:class:`~hrformer.fast.replay.OpReplays`), else as written."""
        if not kernels.running():
            return forward(x)
        return self.replays.run(
            forward, x, roots, (kernels.matmul_path, attention.attention_path, kernels.pack_weights))


def fold_batch_norm(module: ConvNormAct) -> None:
    """Fold the eval-mode BatchNorm of a :class:`ConvNormAct` into its convolution, in place: ``conv``
    becomes a new folded convolution and ``bn`` an identity."""
    if isinstance(module.bn, nn.BatchNorm2d):
        module.conv = folded_conv(module.conv, module.bn)
        module.bn = nn.Identity()


def _put_fused_modules(parent: nn.Module) -> None:
    """Replace every reference layer below ``parent`` by its inference module (setattr on its
    parent); fold the BatchNorm of ConvNormAct subclasses that have none."""
    for name, child in parent.named_children():
        fused_type = FUSED_MODULES.get(type(child))
        if fused_type is not None:
            child = fused_type.from_reference(child)
            setattr(parent, name, child)
        elif isinstance(child, ConvNormAct):
            fold_batch_norm(child)
        _put_fused_modules(child)  # what a fused module took over unchanged (e.g. a custom FFN)


def cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with every floating-point tensor in it (nested lists, tuples, dicts) cast to ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        items = [cast_floats(v, dtype) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return type(value)((k, cast_floats(v, dtype)) for k, v in value.items())
    return value


def _check_dtype(dtype: Optional[torch.dtype]) -> None:
    if dtype not in (None, torch.float32, torch.bfloat16):
        raise InputError(f"dtype must be None (keep the model's), 'auto', torch.float32 or torch.bfloat16, "
                         f"got {dtype!r}")


def native_dtype(model: nn.Module) -> Optional[torch.dtype]:
    """What ``dtype="auto"`` takes: bf16 where the model's device computes it natively (a CPU with AMX
    or AVX512-BF16, a CUDA GPU with bf16), else None (the model's own dtype, fp32). On other CPUs bf16
    products are emulated and run slower than fp32."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if device.type == "cpu":
        native = cpu.native_bf16(cpu.cpu_flags())
    else:
        native = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if native else None


def _warn_without_native_bf16(model: nn.Module) -> None:
    p = next(model.parameters(), None)
    if p is None or p.device.type != "cpu" or cpu.native_bf16(cpu.cpu_flags()):
        return
    warnings.warn(
        "hrformer: fuse_for_inference(dtype=torch.bfloat16) on a CPU without native bf16 (no AMX or "
        f"AVX512-BF16 among the flags of '{cpu.cpu_model()}'): every bf16 product is emulated with fp32 "
        "instructions plus conversions, so this model will run slower than the fp32 one (dtype=None). "
        "Use bf16 on CPUs with AMX or AVX512-BF16, or a GPU.",
        UserWarning, stacklevel=3,
    )


@torch.no_grad()
def fuse_for_inference(model: M, dtype: Union[None, str, torch.dtype] = None) -> M:
    """Eval mode, every BatchNorm folded into its convolution, the fused inference modules put in
    place of the reference layers (irreversible; returns ``model``). For an :class:`hrformer.HRFormer`
    outputs equal the unfused model's to about 1e-6 relative, NaN and Inf included;
    ``HRFORMER_FAST_PATH=0`` keeps the public PyTorch ops. The window attention runs the product
    measured fastest on this machine, timed once per kind of windows on first use
    (:func:`hrformer.fast.attention.attention_product`; ``HRFORMER_ATTENTION`` pins one). Other
    modules get the folded and fused layers, which run the public ops (the kernels run inside an
    HRFormer's forward only).

    ``dtype=torch.bfloat16``: BatchNorm folded in fp32, then the weights cast to bf16; the model
    takes fp32 images and returns fp32 outputs (cast at its entry and exit), within about 3e-2
    relative of fp32 (the OCR head stays fp32: see :data:`KEEP_FP32`). Faster only on CPUs with
    native bf16 (AMX, AVX512-BF16) or on GPUs; on other CPUs it warns. ``None`` keeps the model's
    dtype. ``"auto"``: bf16 where the device computes it natively, else the model's dtype
    (:func:`native_dtype`); the choice is logged on the ``hrformer`` logger (INFO) and readable as the
    parameters' dtype."""
    from ..model import HRFormer  # hrformer.model imports this module

    if isinstance(dtype, str) and dtype == "auto":
        dtype = native_dtype(model)
        logger.info("hrformer: fuse_for_inference(dtype='auto') took %s on %s", dtype or "float32 (the model's own)",
                    cpu.cpu_model() if dtype is None or next(model.parameters()).device.type == "cpu" else "the GPU")
    _check_dtype(dtype)
    hrformer = model if isinstance(model, HRFormer) else None
    if hrformer is not None and hrformer.is_fused:
        params = next(model.parameters()).dtype
        if dtype is not None and dtype != params:
            if dtype != torch.bfloat16 or hrformer.fused.casts_inputs:
                raise InputError(
                    f"this model is already fused in {params}; fuse a fresh copy of the unfused model with "
                    f"dtype={dtype}"
                )
            _to_dtype(model, dtype)
            hrformer.fused = FusedState(casts_inputs=True)
        return model
    model.eval()
    if dtype is not None:
        model.float()  # fold in fp32 whatever the model's dtype
    if isinstance(model, ConvNormAct):  # a lone layer: it has no parent to take a new module
        fold_batch_norm(model)
    _put_fused_modules(model)
    model.eval()  # the folded convolutions and identities are new modules
    if dtype is not None:
        _to_dtype(model, dtype)
    if hrformer is not None:
        hrformer.fused = FusedState(casts_inputs=dtype is not None)
    return model


# Modules kept in fp32 in a reduced-precision model, their inputs cast up: the OCR head's spatial
# softmax over all pixels and its object attention lose ~4% of the logits' range in bf16 (0.2-0.8%
# with the head in fp32; the backbone in bf16 alone stays within 1.3%).
KEEP_FP32 = (OCRHead,)


def _inputs_to_fp32(module: nn.Module, args: Any, kwargs: Any) -> Any:
    return cast_floats(args, torch.float32), kwargs


def _to_dtype(model: nn.Module, dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16:
        _warn_without_native_bf16(model)
    model.to(dtype)
    for module in model.modules():
        if isinstance(module, FusedWindowAttention):
            module.track_table_versions()  # cast under torch.inference_mode: an inference tensor
        if isinstance(module, KEEP_FP32):
            module.float()
            module.register_forward_pre_hook(_inputs_to_fp32, with_kwargs=True)
