"""The HRFormer network: backbone plus an optional task head."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
from torch import nn

from .config import HRFormerConfig, is_int, is_number
from .errors import InputError, InputTypeError
from .fast import FusedState, fuse_for_inference, kernels
from .features import FeatureInfo, feature_take_indices
from .heads import Head, resolve_head
from .layers import BasicBlock, Bottleneck, HRFormerBlock, HRModule, Stage, Stem, checkpointed

# The submodules that _forward_backbone runs.
BACKBONE_MODULES = ("stem", "stage1", "stage2", "stage3", "stage4")


class HRFormer(nn.Module):
    """High-Resolution Transformer.

    Args:
        config: architecture and original-code semantics (see :class:`HRFormerConfig`), used as given
            (``create_model`` applies the head's original defaults first).
        head: a name in :data:`hrformer.heads.HEADS` (``"classification"``, ``"pose"``,
            ``"segmentation"``...) or ``None`` for the bare backbone (``forward`` returns maps).
        num_classes / num_keypoints: outputs of the head (the one its ``output_arg`` names; giving
            the other is an error). Default: the head's ``default_outputs``.
        in_chans: input channels.
        drop_rate: dropout before the head's last layer (heads that have one).
        drop_path_rate: stochastic depth, linear over the blocks of stages 2-4.
        out_indices: which maps ``forward`` returns when ``head is None``.
        frozen_stages: freeze the stem (0) and stages 1..k (k >= 1); -1 freezes nothing.
        norm_eval: keep BatchNorm layers in eval mode while training.

    Shapes: ``forward_features``: (B, in_chans, H, W) -> list of (B, C_i, ceil(H/4/2**i), ...).
    Every output comes back contiguous in the input's memory format (channels-last inside).

    ``fused``: None, or the :class:`~hrformer.fast.FusedState` that :meth:`fuse_for_inference` set.
    """

    def __init__(
        self,
        config: HRFormerConfig,
        head: Optional[str] = "classification",
        num_classes: Optional[int] = None,
        num_keypoints: Optional[int] = None,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        out_indices: Optional[Sequence[int]] = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
    ) -> None:
        super().__init__()
        self.fused: Optional[FusedState] = None
        head_type, num_outputs = resolve_head(head, num_classes, num_keypoints)
        _check_args(config, head_type, in_chans, drop_rate, drop_path_rate, frozen_stages, out_indices, norm_eval)
        self.config = config
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.drop_path_rate = drop_path_rate
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.grad_checkpointing = False

        cfg = config
        self.stem = Stem(in_chans, cfg.stem_width)
        self.stage1 = nn.Sequential(
            *(Bottleneck(cfg.stem_width if i == 0 else cfg.stem_width * Bottleneck.expansion, cfg.stem_width)
              for i in range(cfg.stage1_blocks))
        )
        depths = [cfg.modules[s] * cfg.blocks for s in (1, 2, 3)]
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        in_chs: List[int] = [cfg.stem_width * Bottleneck.expansion]
        stages = []
        for s, depth in zip((1, 2, 3), depths):
            start = sum(depths[: s - 1])
            chs = list(cfg.channels[: s + 1])
            stages.append(Stage(
                in_chs, chs, cfg.modules[s], cfg.blocks, self._block_factory(s), dpr[start : start + depth],
                cfg.upsample_mode, multiscale_output=cfg.multiscale_output or s < 3,
            ))
            in_chs = chs
        self.stage2, self.stage3, self.stage4 = stages

        self.out_indices = tuple(range(cfg.num_outputs)) if out_indices is None else tuple(out_indices)
        self.feature_info = self._feature_info(self.out_indices)
        maps = cfg.channels[: cfg.num_outputs]
        self.head: Optional[Head] = (
            head_type(maps, num_outputs, drop_rate=drop_rate) if head_type is not None else None
        )
        self.num_features = self.head.num_features if self.head is not None else cfg.channels[0]
        self._freeze_stages()

    def _block_factory(self, stage: int):
        cfg = self.config

        def make(branch: int, index: int, drop_path: float) -> nn.Module:
            if cfg.block == "basic":
                return BasicBlock(cfg.channels[branch])
            shift = cfg.window_size // 2 if cfg.shift_windows and index % 2 == 1 else 0
            return HRFormerBlock(
                cfg.channels[branch], cfg.heads[branch], window_size=cfg.window_size, mlp_ratio=cfg.mlp_ratio,
                drop_path=drop_path, rel_pos_bias=cfg.rel_pos_bias, mask_padding=cfg.mask_padding,
                shift_size=shift, ffn_dw=cfg.ffn_dw,
            )

        return make

    # ------------------------------------------------------------------ forward
    def _forward_backbone(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The network of the paper, stem to stage 4: (B, in_chans, H, W) -> channels-last maps at
        strides 4, 8, 16, 32 (only stride 4 without multiscale_output). No input check, no casts."""
        # Channels-last throughout: the blocks' (B, H, W, C) token views are then free, and oneDNN's
        # depth-wise convolutions run ~10x faster than on NCHW. Values are unchanged.
        x = x.contiguous(memory_format=torch.channels_last)
        if self.grad_checkpointing and torch.is_grad_enabled():
            # One segment per block: recomputing stem and stage 1 at once would hold all of their
            # full-resolution activations together in the backward pass.
            for block in [self.stem, *self.stage1]:
                x = checkpointed(block, x)
        else:
            x = self.stage1(self.stem(x))
        # Only the list holds stage 1's output: stage 2's transition frees it, not this method's return.
        xs = [x]
        del x
        for stage in (self.stage2, self.stage3, self.stage4):
            xs = stage(xs)
        return xs

    def forward_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(B, in_chans, H, W) -> maps at strides 4, 8, 16, 32 (only stride 4 without
        multiscale_output), contiguous in ``x``'s memory format."""
        self._check_input(x)
        with self._fast_path(x):
            feats = self._run_backbone(self._to_compute_dtype(x))
        return self._like_input(feats, x)

    def forward_head(self, feats: List[torch.Tensor], pre_logits: bool = False, **head_kwargs: Any) -> Any:
        """The head on the maps; ``head_kwargs`` go to the head (e.g. ``output_size``, ``return_aux``
        for the OCR head). Outputs are contiguous in the maps' memory format."""
        if self.head is None:
            raise RuntimeError("this model was built without a head (head=None)")
        # The head runs on channels-last maps, as inside forward, whatever layout the caller's maps
        # have: forward_head(forward_features(x)) equals forward(x) bit for bit.
        maps = [f.contiguous(memory_format=torch.channels_last) for f in self._to_compute_dtype(feats)]
        return self._like_input(self.head(maps, pre_logits=pre_logits, **head_kwargs), feats[0])

    def forward(self, x: torch.Tensor, **head_kwargs: Any) -> Any:
        """Maps (no head) or the head's output, contiguous in ``x``'s memory format. ``head_kwargs``
        go to the head (e.g. ``return_aux=True`` for the OCR head); heads that declare
        ``needs_output_size`` also get ``output_size=`` the input's (H, W)."""
        if self.head is None and head_kwargs:
            raise InputTypeError(f"a model without a head takes no head arguments, got {sorted(head_kwargs)}")
        self._check_input(x)
        with self._fast_path(x):
            feats = self._run_backbone(self._to_compute_dtype(x))
            if self.head is None:
                out: Any = [feats[i] for i in self.out_indices]
            else:
                if self.head.needs_output_size:
                    head_kwargs.setdefault("output_size", (x.shape[-2], x.shape[-1]))  # traced as shape ops
                out = self.head(feats, **head_kwargs)
        return self._like_input(out, x)

    # Fusing changes the modules (hrformer.fast) and ``self.fused``, which only these helpers read.
    def _run_backbone(self, x: torch.Tensor) -> List[torch.Tensor]:
        """:meth:`_forward_backbone`; a fused model replays its ops (:mod:`hrformer.fast.replay`)."""
        if self.fused is None:
            return self._forward_backbone(x)
        roots = [(self, name, self._modules[name]) for name in BACKBONE_MODULES]
        return self.fused.run_backbone(self._forward_backbone, x, roots)

    def _fast_path(self, x: torch.Tensor) -> ContextManager[None]:
        """A fused model runs its oneDNN kernels for a finite input ``x`` (NaN and Inf take the public
        ops, which propagate them); the reference model runs as written."""
        return kernels.for_model_input(x) if self.fused is not None else nullcontext()

    def _compute_dtype(self, x: torch.Tensor) -> Optional[torch.dtype]:
        """The dtype a reduced-precision fused model casts the float32 input ``x`` to; None: ``x`` runs
        as given."""
        if self.fused is None or not self.fused.casts_inputs or x.dtype != torch.float32:
            return None
        dtype = self.stem.conv1.conv.weight.dtype
        return dtype if dtype != x.dtype else None

    def _to_compute_dtype(self, value: Any) -> Any:
        """The input, or the maps given to :meth:`forward_head`, in the dtype the model computes in."""
        first = value[0] if isinstance(value, (list, tuple)) else value
        dtype = self._compute_dtype(first)
        return value if dtype is None else _map_tensors(value, lambda t: t.to(dtype))

    def _like_input(self, out: Any, x: torch.Tensor) -> Any:
        """``out`` in the caller's terms: contiguous in ``x``'s memory format (4-D outputs; the others
        contiguous), and float32 again where a fused bf16 model cast ``x``."""
        dtype = x.dtype if self._compute_dtype(x) is not None else None
        layout = _memory_format(x)
        return _map_tensors(out, lambda t: t.to(
            dtype=dtype or t.dtype, memory_format=layout if t.dim() == 4 else torch.contiguous_format
        ))

    # ------------------------------------------------------------------ timm's feature API
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, Sequence[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[List[torch.Tensor], List[torch.Tensor]]]:
        """timm's feature extraction: the intermediates are the maps :meth:`forward_features` returns
        (strides 4, 8, 16, 32), chosen by ``indices`` (None: all; int n: the last n; a sequence:
        those positions, negative from the end), in ascending order.

        Returns ``intermediates`` (a list of (B, C_i, H_i, W_i)) when ``intermediates_only``, else
        ``(forward_features(x), intermediates)``: the features before any head, as timm. All maps
        come out of the last stage's fusion, so ``stop_early`` saves nothing; HRFormer has no final
        norm, so ``norm`` is accepted and changes nothing (as timm's models without one).
        """
        if output_fmt != "NCHW":
            raise InputError(f"output_fmt={output_fmt!r}: HRFormer's maps are NCHW only; pass output_fmt='NCHW'")
        take, _ = feature_take_indices(self.config.num_outputs, indices)
        feats = self.forward_features(x)
        intermediates = [feats[i] for i in take]
        return intermediates if intermediates_only else (feats, intermediates)

    def prune_intermediate_layers(
        self,
        indices: Union[int, Sequence[int]] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> List[int]:
        """timm's pruning for :meth:`forward_intermediates`: returns the kept map positions.

        ``prune_head=True`` removes the head: the model becomes a backbone whose ``forward`` returns
        the kept maps (``out_indices`` and ``feature_info`` follow). No layer is removed: every map
        comes out of the last stage's fusion. ``prune_norm`` changes nothing (there is no final norm).
        """
        take, _ = feature_take_indices(self.config.num_outputs, indices)
        if prune_head:
            self.head = None
            self.drop_rate = 0.0  # the head's dropout went with it
            self.num_features = self.config.channels[0]
            self.out_indices = tuple(take)
            self.feature_info = self._feature_info(self.out_indices)
        return take

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Parameter-name patterns for layer-wise learning rates, as timm's ``group_matcher``
        (``timm.optim.param_groups_layer_decay`` or :func:`hrformer.optim.param_groups_layer_decay`).

        ``stem``: the stem and stage 1 (one group). ``blocks``: coarse, one group per stage 2-4;
        fine, each stage's transition, then per multi-resolution module one group per block depth
        (the parallel branches' k-th blocks together), the module's fusion joining its last block.
        Unmatched parameters (the head) form the last group.
        """
        if coarse:
            return {"stem": r"^stem\.|^stage1\.", "blocks": r"^stage(\d+)\."}
        return {
            "stem": r"^stem\.|^stage1\.",
            "blocks": [
                (r"^stage(\d+)\.transition\.", (-1,)),  # before the stage's module 0
                (r"^stage(\d+)\.hr_modules\.(\d+)\.branches\.\d+\.(\d+)\.", None),
                (r"^stage(\d+)\.hr_modules\.(\d+)\.fusion\.", (99999,)),  # timm: joins the previous group
            ],
        }

    def _feature_info(self, indices: Sequence[int]) -> FeatureInfo:
        # Every map is an output of stage 4 (its last module's fusion), at position ``index``.
        channels = self.config.channels
        return FeatureInfo(
            [{"num_chs": channels[i], "reduction": 4 * 2**i, "module": "stage4", "index": i} for i in indices]
        )

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor):
            raise InputTypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise InputError(f"expected a 4-D input (B, {self.in_chans}, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise InputError(
                f"expected {self.in_chans} input channels, got {x.shape[1]} (input shape {tuple(x.shape)}); "
                f"build the model with in_chans={x.shape[1]} or convert the input"
            )
        if not x.is_floating_point():
            raise InputTypeError(f"expected a floating-point input, got dtype {x.dtype}; convert with x.float()")
        params = self.stem.conv1.conv.weight.dtype
        if x.dtype == params or _autocast_on(x) or self._compute_dtype(x) is not None:
            return
        if self.fused is not None and self.fused.casts_inputs:
            raise InputTypeError(
                f"input dtype {x.dtype}: this model was fused for {params} inference and takes float32 images (cast "
                f"at its entry) or {params} ones; convert the input with x.float()"
            )
        raise InputTypeError(
            f"input dtype {x.dtype} does not match the model's parameters ({params}): convert the model "
            f"(model.to({x.dtype})), the input (x.to({params})), or run under torch.autocast"
        )

    # ------------------------------------------------------------------ helpers users expect
    @property
    def is_fused(self) -> bool:
        """Whether :meth:`fuse_for_inference` made this an inference-only model (BatchNorm folded)."""
        return self.fused is not None

    @property
    def head_type(self) -> Optional[str]:
        """The head's name (``"pose"``...), or None for a backbone."""
        return self.head.task if self.head is not None else None

    @property
    def num_classes(self) -> int:
        """Outputs of a classification / segmentation head (0 for other heads or none)."""
        return self.head.num_outputs if self.head is not None and self.head.output_arg == "num_classes" else 0

    @property
    def num_keypoints(self) -> int:
        """Heatmaps of a pose head (0 for other heads or none)."""
        return self.head.num_outputs if self.head is not None and self.head.output_arg == "num_keypoints" else 0

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass to save memory: only the inputs of every block
        of the stem, stage 1, the transitions and the multi-resolution modules are kept."""
        self.grad_checkpointing = enable
        for m in self.modules():
            if isinstance(m, (HRModule, Stage)):
                m.grad_checkpointing = enable

    def no_weight_decay(self) -> Set[str]:
        """Parameter names to exclude from weight decay (the relative position bias tables)."""
        return {n for n, _ in self.named_parameters() if n.endswith("relative_position_bias_table")}

    def get_classifier(self) -> nn.Module:
        return self.head.get_classifier() if self.head is not None else nn.Identity()

    def reset_classifier(self, num_outputs: int) -> None:
        """Replace the head's last layer (classes, keypoints) with a freshly initialised one."""
        if self.head is None:
            raise RuntimeError("this model has no head")
        self.head.reset(num_outputs)

    def model_kwargs(self) -> Dict[str, Any]:
        """The constructor arguments (besides ``config``) that rebuild this model."""
        kwargs: Dict[str, Any] = {
            "head": self.head_type, "in_chans": self.in_chans, "drop_rate": self.drop_rate,
            "drop_path_rate": self.drop_path_rate, "frozen_stages": self.frozen_stages, "norm_eval": self.norm_eval,
        }
        if self.head is not None:
            kwargs[self.head.output_arg] = self.head.num_outputs
        else:
            kwargs["out_indices"] = list(self.out_indices)
        return kwargs

    def _frozen_modules(self) -> List[nn.Module]:
        stages = [self.stem, self.stage1, self.stage2, self.stage3, self.stage4]
        return stages[: self.frozen_stages + 1] if self.frozen_stages >= 0 else []

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "HRFormer":
        if mode and self.is_fused:
            raise RuntimeError(
                "this model was fused for inference (BatchNorm folded into the convolutions) and cannot be "
                "trained; train the unfused model and fuse a copy for inference"
            )
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                m.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    def fuse_for_inference(self, dtype: Union[None, str, torch.dtype] = None) -> "HRFormer":
        """Inference mode (irreversible; returns self): see :func:`hrformer.fast.fuse_for_inference`.
        Every BatchNorm is folded into its convolution, the fused inference modules replace the
        reference layers and ``is_fused`` becomes True; outputs equal the unfused model's to about
        1e-6 relative, NaN and Inf included. The fused model refuses ``train()`` and
        ``save_pretrained``; it pickles (``torch.save(model)``, ``copy.deepcopy``) as any module.
        ``dtype=torch.bfloat16``: folded in fp32, then cast; fp32 images in, fp32 outputs out, within
        about 3e-2 relative (faster only with AMX / AVX512-BF16 or a GPU); ``dtype="auto"``: bf16
        where the device computes it natively, else fp32."""
        return fuse_for_inference(self, dtype=dtype)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """Channels-last for a channels-last input, else contiguous (a tensor that is both, e.g. one
    channel, counts as contiguous)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``value`` with ``fn`` applied to every floating-point tensor in it (lists, tuples)."""
    if isinstance(value, torch.Tensor):
        return fn(value) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn) for v in value)
    return value


def _autocast_on(x: torch.Tensor) -> bool:
    try:
        return torch.is_autocast_enabled(x.device.type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def _check_args(config, head_type, in_chans, drop_rate, drop_path_rate, frozen_stages, out_indices,
                norm_eval) -> None:
    if not is_int(in_chans) or in_chans <= 0:
        raise InputError(f"in_chans must be a positive integer, got {in_chans!r}")
    for name, rate in (("drop_path_rate", drop_path_rate), ("drop_rate", drop_rate)):
        if not is_number(rate) or not 0.0 <= rate < 1.0:
            raise InputError(f"{name} must be a number in [0, 1), got {rate!r}")
    if not isinstance(norm_eval, bool):
        raise InputError(f"norm_eval must be True or False (a bool, not a string or number), got {norm_eval!r}")
    if drop_rate and (head_type is None or not head_type.has_dropout):
        owner = f"head={head_type.task!r}" if head_type is not None else "a model without a head"
        raise InputError(f"drop_rate={drop_rate} does not apply to {owner} (it has no dropout)")
    if not is_int(frozen_stages) or not -1 <= frozen_stages <= 4:
        raise InputError(f"frozen_stages must be -1 (nothing) or 0..4, got {frozen_stages!r}")
    if head_type is not None and config.num_outputs < head_type.maps_needed:
        raise InputError(
            f"head={head_type.task!r} reads all {head_type.maps_needed} maps but multiscale_output=False keeps only "
            "the stride-4 map: build it with multiscale_output=True"
        )
    if out_indices is not None:
        if head_type is not None:
            raise InputError("out_indices applies to a backbone (head=None or features_only=True)")
        indices = tuple(out_indices)
        if not indices:
            raise InputError("out_indices is empty: name at least one map (0..3)")
        if len(set(indices)) != len(indices):
            raise InputError(f"out_indices {indices} repeats a map")
        for i in indices:
            if not is_int(i) or not 0 <= i < config.num_outputs:
                why = (" (multiscale_output=False: the single-scale last stage, as in the pose models, computes only "
                       "the stride-4 map; build with multiscale_output=True for the others)"
                       if not config.multiscale_output else "")
                raise InputError(f"out_indices {indices}: {i!r} out of range for {config.num_outputs} map(s){why}")
