"""The inference window attention: the relative position bias gathered once per version of its table,
masks kept per input size, and the attention product measured fastest on this machine."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.attention import LocalWindowAttention
from . import kernels
from .modules import FusedLinear

# The explicit products hold the (B*nW, heads, N, N) scores: beyond this the flash kernel, which
# never holds them, runs whatever the timing.
EXPLICIT_MAX_BYTES = 16 << 20

# Which product the fused window attention runs. ATen's CPU flash kernel and the explicit
# matmul-softmax-matmul win on different CPUs and shapes: the explicit one 1.3-2.4x faster on AMD
# EPYCs (AVX2; AVX-512 with BF16), the flash kernel 4-9% faster on Intel Xeons with AVX-512 / AMX;
# for bf16 windows the explicit one with its softmax in fp32 is a third candidate. "auto" times the
# candidates once per kind of windows (see attention_product) and keeps the fastest; a name pins
# one (HRFORMER_ATTENTION).
ATTENTION_ENV_VAR = "HRFORMER_ATTENTION"


def explicit_attention(q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd) + mask) v as three products, the scores scaled and masked in place
    in one op."""
    attn = _scaled_masked(torch.matmul(q, key.transpose(-2, -1)), q.shape[-1] ** -0.5, mask)
    return torch.matmul(attn.softmax(-1), v)


def explicit_mixed_attention(
    q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]
) -> torch.Tensor:
    """:func:`explicit_attention` for reduced-precision windows with the products in their dtype and
    the scores, mask and softmax in fp32 (bf16 softmax kernels are the slow part on CPUs)."""
    attn = _scaled_masked(torch.matmul(q, key.transpose(-2, -1)).float(), q.shape[-1] ** -0.5, mask)
    return torch.matmul(attn.softmax(-1).to(q.dtype), v)


def _scaled_masked(scores: torch.Tensor, scale: float, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``scores * scale + mask`` in place: one pass (mask + scale * scores), not a multiply and an add."""
    if mask is None:
        return scores.mul_(scale)
    return torch.add(mask, scores, alpha=scale, out=scores)


def flash_attention(q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, key, v, attn_mask=mask)


ATTENTION_PRODUCTS: Dict[str, Callable[..., torch.Tensor]] = {
    "flash": flash_attention, "explicit": explicit_attention, "explicit-mixed": explicit_mixed_attention,
}
ATTENTION_PATHS = ("auto", *ATTENTION_PRODUCTS)


def attention_path_from_environment() -> str:
    return kernels.path_from_environment(ATTENTION_ENV_VAR, ATTENTION_PATHS)


attention_path = attention_path_from_environment()

_MISSING = object()

# (windows as a power of two, heads, tokens, head dim, dtype, mask kind) -> the product measured
# fastest for such windows. Powers of two: a model taking images of many sizes times a few window
# counts per branch, not one per size.
_fastest: Dict[Tuple, str] = {}


def attention_product(q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> str:
    """The name (in :data:`ATTENTION_PRODUCTS`) of the product to run on these (B*nW, heads, N, hd)
    CPU windows: the pinned one (``attention_path``), else the fastest measured for windows like
    them (same heads, tokens, head dim, dtype and mask kind, window count within a factor of 2);
    the flash kernel when the explicit scores would not fit in a few MB."""
    b, heads, n, head_dim = q.shape
    if b * heads * n * n * 4 > EXPLICIT_MAX_BYTES:
        return "flash"
    if attention_path != "auto":
        return attention_path
    mask_kind = None if mask is None else (mask.size(0) == 1, mask.size(1))
    kind = (b.bit_length(), heads, n, head_dim, q.dtype, mask_kind)
    name = _fastest.get(kind)
    if name is None:
        names: List[str] = ["flash", "explicit"] + (["explicit-mixed"] if q.dtype != torch.float32 else [])
        name = _fastest[kind] = kernels.fastest_of(
            {candidate: (lambda f=ATTENTION_PRODUCTS[candidate]: f(q, key, v, mask)) for candidate in names}
        )
    return name


class FusedWindowAttention(LocalWindowAttention):
    """Window attention whose relative position bias is gathered from the table once per version of
    the table (not per call), masks kept per input size, and, with the fast path on, the attention
    product measured fastest for each kind of windows (:func:`attention_product`).

    The gathered bias is a cache, never state: it is gathered again whenever the table is another
    tensor or was changed in place since (``load_state_dict``, ``table.mul_(2)`` under ``no_grad``,
    an optimizer step: all bump the tensor's version counter), or moved to another device or dtype.
    Edits through ``table.data`` bypass the version counter and are not seen. A table made under
    ``torch.inference_mode`` has no version counter: fusing copies it into a plain tensor
    (:meth:`track_table_versions`), and one assigned after fusing is gathered on every call. Traced
    and compiled graphs gather from the table, as the reference layer.
    """

    # kernels.tensor_state of the table when the cached bias was gathered.
    _bias_key: Optional[kernels.TensorState] = None
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
            fused.track_table_versions()
        return fused.train(module.training)

    def track_table_versions(self) -> None:
        """Make the bias table a plain tensor if it is an inference tensor (made or cast under
        ``torch.inference_mode``), which has no version counter for the gathered-bias cache to read:
        a copy, taken outside inference mode."""
        table = self._parameters.get("relative_position_bias_table")
        if table is not None and table.is_inference():
            with torch.inference_mode(False), torch.no_grad():
                self.relative_position_bias_table = nn.Parameter(table.clone(), requires_grad=table.requires_grad)

    def _table(self) -> Optional[torch.Tensor]:
        # From the parameter dict: nn.Module's attribute fallback costs ~1 us per read.
        params = self._parameters
        if "relative_position_bias_table" in params:
            return params["relative_position_bias_table"]
        return self.relative_position_bias_table

    def relative_position_bias(self) -> torch.Tensor:
        if kernels.tracing():
            return super().relative_position_bias()
        bias = self._current_bias(self._table())
        return super().relative_position_bias() if bias is None else bias

    def _current_bias(self, table: torch.Tensor) -> Optional[torch.Tensor]:
        """The gathered bias of ``table``, gathered again (and the masks forgotten) when the table
        changed; None for a table made under ``torch.inference_mode`` (assigned after fusing), which
        has no version counter: an in-place edit could not be seen, so nothing is gathered from it
        into the cache (what the cache holds stays keyed to the tensor it came from)."""
        if table.is_inference():
            return None
        if not kernels.unchanged(self._bias_key, table):
            # Gathered without autograd and outside inference mode, so the cache serves any later call.
            with torch.inference_mode(False), torch.no_grad():
                self._bias = super().relative_position_bias().contiguous()
            self._bias_key = kernels.tensor_state(table)
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
        return self.kept_mask(batch, height, width, pads, dtype, device)

    def kept_mask(
        self, batch: int, height: int, width: int, pads: Tuple[int, int, int, int], dtype: torch.dtype,
        device: torch.device,
    ) -> Optional[torch.Tensor]:
        """:meth:`attention_mask` for a caller that knows no tracer or compiler is recording (the
        fused block with the kernels on): the kept mask, without the tracing checks."""
        table = self._table()
        if table is not None and self._current_bias(table) is None:  # forgets the masks when the table changed
            return super().attention_mask(batch, height, width, pads, dtype, device)
        masks = self.__dict__.get("_masks")
        if masks is None:
            masks = self.__dict__["_masks"] = {}
        shape = (batch, height, width, dtype, device)
        mask = masks.get(shape, _MISSING)
        if mask is _MISSING:
            if len(masks) >= 16:
                masks.clear()
            with torch.inference_mode(False), torch.no_grad():
                mask = masks[shape] = super().attention_mask(batch, height, width, pads, dtype, device)
        return mask

    def attend(
        self, q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        # The switch (HRFORMER_FAST_PATH=0, set_fast_path(False)) sends it through the reference path too.
        if self.training or not kernels.active(q):
            return super().attend(q, key, v, mask)
        product = attention_product(q, key, v, mask)
        if product == "flash":
            return super().attend(q, key, v, mask)
        return ATTENTION_PRODUCTS[product](q, key, v, mask)
