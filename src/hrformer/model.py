"""The HRFormer network: backbone plus an optional task head."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Set, Union

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import HRFormerConfig
from .features import FeatureInfo
from .heads import ClassificationHead, PoseHead, SegmentationHead
from .layers import BasicBlock, Bottleneck, HRFormerBlock, HRModule, LocalWindowAttention, Stage, Stem
from .layers.conv_norm_act import ConvNormAct
from .layers.fusion import UPSAMPLE_MODES

HEADS = ("classification", "pose", "segmentation")


class HRFormer(nn.Module):
    """High-Resolution Transformer.

    Args:
        config: architecture (see :class:`HRFormerConfig`).
        head: ``"classification"`` (ImageNet head), ``"pose"`` (heatmaps), ``"segmentation"``, or
            ``None`` for the bare backbone (``forward`` then returns the feature maps).
        num_classes / num_keypoints: head outputs.
        rel_pos_bias: add the learned relative position bias to attention logits (the official
            pose code never adds it: use False for its checkpoints).
        upsample_mode: fusion upsampling, ``"nearest"`` (official classification code) or
            ``"bilinear"`` (official pose code and mmpose). Default: nearest for classification,
            bilinear otherwise.
        multiscale_output: fuse the last module into all four branches. Default: False for the
            pose head (as the originals), True otherwise.
        mask_padding: exclude window padding from attention (the originals do not).
        out_indices: which maps ``forward`` returns when ``head is None``.
        frozen_stages: freeze the stem (0) and stages 1..k (k >= 1); -1 freezes nothing.
        norm_eval: keep BatchNorm layers in eval mode while training.

    Shapes: ``forward_features``: (B, in_chans, H, W) -> list of (B, C_i, ceil(H/4/2**i), ...).
    """

    def __init__(
        self,
        config: HRFormerConfig,
        head: Optional[str] = "classification",
        num_classes: int = 1000,
        num_keypoints: int = 17,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        rel_pos_bias: bool = True,
        upsample_mode: Optional[str] = None,
        multiscale_output: Optional[bool] = None,
        mask_padding: bool = False,
        out_indices: Optional[Sequence[int]] = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
    ) -> None:
        super().__init__()
        if head not in HEADS + (None,):
            raise ValueError(f"head must be one of {HEADS} or None, got {head!r}")
        upsample_mode = upsample_mode or ("nearest" if head == "classification" else "bilinear")
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {upsample_mode!r}")
        if multiscale_output is None:
            multiscale_output = head != "pose"
        if head in ("classification", "segmentation") and not multiscale_output:
            raise ValueError(f"head={head!r} needs all four maps: multiscale_output must be True")
        self.config = config
        self.in_chans = in_chans
        self.head_type = head
        self.num_classes = num_classes if head in ("classification", "segmentation") else 0
        self.num_keypoints = num_keypoints if head == "pose" else 0
        self.rel_pos_bias = rel_pos_bias
        self.upsample_mode = upsample_mode
        self.multiscale_output = multiscale_output
        self.mask_padding = mask_padding
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
                upsample_mode, multiscale_output=multiscale_output or s < 3,
            ))
            in_chs = chs
        self.stage2, self.stage3, self.stage4 = stages

        num_maps = 4 if multiscale_output else 1
        self.out_indices = tuple(range(num_maps)) if out_indices is None else tuple(out_indices)
        for i in self.out_indices:
            if not 0 <= i < num_maps:
                raise ValueError(f"out_indices {tuple(out_indices or ())} out of range for {num_maps} output map(s)")
        self.feature_info = FeatureInfo(
            [{"num_chs": cfg.channels[i], "reduction": 4 * 2**i, "module": f"stage4.{i}"} for i in self.out_indices]
        )

        self.head: Optional[nn.Module]
        if head == "classification":
            self.head = ClassificationHead(cfg.channels, num_classes, drop_rate=drop_rate)
            self.num_features = self.head.num_features
        elif head == "pose":
            self.head = PoseHead(cfg.channels[0], num_keypoints)
            self.num_features = cfg.channels[0]
        elif head == "segmentation":
            self.head = SegmentationHead(cfg.channels, num_classes, drop_rate=drop_rate)
            self.num_features = sum(cfg.channels)
        else:
            self.head = None
            self.num_features = cfg.channels[0]
        self._freeze_stages()

    def _block_factory(self, stage: int):
        cfg = self.config

        def make(branch: int, index: int, drop_path: float) -> nn.Module:
            if cfg.block == "basic":
                return BasicBlock(cfg.channels[branch])
            shift = cfg.window_size // 2 if cfg.shift_windows and index % 2 == 1 else 0
            return HRFormerBlock(
                cfg.channels[branch], cfg.heads[branch], window_size=cfg.window_size, mlp_ratio=cfg.mlp_ratio,
                drop_path=drop_path, rel_pos_bias=self.rel_pos_bias, mask_padding=self.mask_padding,
                shift_size=shift, ffn_dw=cfg.ffn_dw,
            )

        return make

    # ------------------------------------------------------------------ forward
    def forward_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(B, in_chans, H, W) -> maps at strides 4, 8, 16, 32 (only stride 4 without multiscale_output)."""
        self._check_input(x)
        # Channels-last throughout: the blocks' (B, H, W, C) token views are then free, and oneDNN's
        # depth-wise convolutions run ~10x faster than on NCHW. Values are unchanged.
        x = x.contiguous(memory_format=torch.channels_last)
        if self.grad_checkpointing and torch.is_grad_enabled():
            # One segment per block: recomputing stem and stage 1 at once would hold all of their
            # full-resolution activations together in the backward pass.
            for block in [self.stem, *self.stage1]:
                x = checkpoint(block, x, use_reentrant=False)
        else:
            x = self.stage1(self.stem(x))
        xs = [x]
        for stage in (self.stage2, self.stage3, self.stage4):
            xs = stage(xs)
        return xs

    def forward_head(self, feats: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        if self.head is None:
            raise RuntimeError("this model was built without a head (head=None)")
        return self.head(feats, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        feats = self.forward_features(x)
        if self.head is None:
            return [feats[i] for i in self.out_indices]
        return self.forward_head(feats)

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D input (B, {self.in_chans}, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected {self.in_chans} input channels, got {x.shape[1]} (input shape {tuple(x.shape)}); "
                f"build the model with in_chans={x.shape[1]} or convert the input"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point input, got dtype {x.dtype}; convert with x.float()")

    # ------------------------------------------------------------------ helpers users expect
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass to save memory: only the inputs of the stem +
        stage 1 segment, of every transition and of every multi-resolution module are kept."""
        self.grad_checkpointing = enable
        for m in self.modules():
            if isinstance(m, (HRModule, Stage)):
                m.grad_checkpointing = enable

    def no_weight_decay(self) -> Set[str]:
        """Parameter names to exclude from weight decay (the relative position bias tables)."""
        return {n for n, _ in self.named_parameters() if n.endswith("relative_position_bias_table")}

    def get_classifier(self) -> nn.Module:
        if self.head is None:
            return nn.Identity()
        return getattr(self.head, "fc", None) or getattr(self.head, "conv", None) or self.head.cls

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last layer (classes, keypoints) with a freshly initialised one."""
        if self.head is None:
            raise RuntimeError("this model has no head")
        self.head.reset(num_classes)
        if self.head_type == "pose":
            self.num_keypoints = num_classes
        else:
            self.num_classes = num_classes

    def model_kwargs(self) -> Dict[str, Any]:
        """The constructor arguments (besides ``config``) that rebuild this model."""
        return {
            "head": self.head_type, "num_classes": self.num_classes or 1000,
            "num_keypoints": self.num_keypoints or 17, "in_chans": self.in_chans,
            "rel_pos_bias": self.rel_pos_bias, "upsample_mode": self.upsample_mode,
            "multiscale_output": self.multiscale_output, "mask_padding": self.mask_padding,
        }

    def _frozen_modules(self) -> List[nn.Module]:
        stages = [self.stem, self.stage1, self.stage2, self.stage3, self.stage4]
        return stages[: self.frozen_stages + 1] if self.frozen_stages >= 0 else []

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "HRFormer":
        super().train(mode)
        if mode:
            for m in self._frozen_modules():
                m.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    @torch.no_grad()
    def fuse_for_inference(self) -> "HRFormer":
        """Inference mode (eval only; irreversible). Returns self.

        Folds every BatchNorm into its convolution and gathers the attention biases once; on the
        CPU the convolutions then run with their activations (and the HRNet residual adds) as
        single oneDNN kernels where that pays. (Unfused eval-mode models fold on the fly, for the
        large convolutions only.) Outputs equal the unfused model's to about 1e-6 relative."""
        self.eval()
        for m in self.modules():
            if isinstance(m, (ConvNormAct, LocalWindowAttention)):
                m.fuse()
        return self
