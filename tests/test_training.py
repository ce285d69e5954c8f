"""Training paths: gradient checkpointing gives the same gradients for less saved memory; the
explicit attention used in training gives SDPA's gradients."""

from __future__ import annotations

from typing import Dict

import pytest
import torch
import torch.nn.functional as F

import hrformer
from hrformer.layers import LocalWindowAttention


def _grads(model: torch.nn.Module, x: torch.Tensor, seed: int = 0) -> Dict[str, torch.Tensor]:
    torch.manual_seed(seed)  # same drop-path draws in both runs
    model.zero_grad(set_to_none=True)
    out = model(x)
    loss = sum(o.square().mean() for o in out) if isinstance(out, list) else out.square().mean()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("head", ["pose", "classification", None])
def test_checkpointing_same_gradients_in_train_mode(head):
    """Train mode (batch statistics), stochastic depth on: checkpointing replays the same random
    draws, so every gradient is unchanged."""
    torch.manual_seed(0)
    model = hrformer.create_model("hrformer_t", head=head, drop_path_rate=0.2).train()
    x = torch.randn(2, 3, 64, 48)
    ref = _grads(model, x)
    model.set_grad_checkpointing(True)
    ckpt = _grads(model, x)
    assert ref.keys() == ckpt.keys()
    scale = max(g.abs().max() for g in ref.values())
    for n in ref:
        assert (ckpt[n] - ref[n]).abs().max() <= 1e-5 * scale, n


def _saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass (outside checkpoints)."""
    seen: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(seen.values())


def test_checkpointing_keeps_a_fraction_of_the_activations():
    model = hrformer.create_model("hrformer_s", head=None).train()
    x = torch.randn(2, 3, 128, 96)
    full = _saved_bytes(model, x)
    model.set_grad_checkpointing(True)
    ckpt = _saved_bytes(model, x)
    assert ckpt < 0.1 * full, (ckpt, full)


@pytest.mark.parametrize("rel_pos_bias,shift", [(True, 0), (False, 0), (True, 3)])
def test_training_attention_gradients_match_sdpa(rel_pos_bias, shift):
    """The explicit matmul-softmax-matmul path (used in training when the bias needs a gradient)
    against torch's scaled_dot_product_attention, gradients of input and parameters."""
    torch.manual_seed(0)
    attn = LocalWindowAttention(16, 2, window_size=7, rel_pos_bias=rel_pos_bias, shift_size=shift).train()
    x = torch.randn(2, 10, 9, 16, requires_grad=True)

    def grads():
        attn.zero_grad(set_to_none=True)
        x.grad = None
        attn(x).square().sum().backward()
        return [x.grad.clone()] + [p.grad.clone() for p in attn.parameters()]

    ours = grads()
    sdpa = LocalWindowAttention.attend
    try:
        LocalWindowAttention.attend = lambda self, q, k, v, mask: F.scaled_dot_product_attention(q, k, v, mask)
        ref = grads()
    finally:
        LocalWindowAttention.attend = sdpa
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_checkpointing_updates_batch_norm_statistics_once():
    """The recomputation in the backward pass must not update running statistics a second time."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 48)
    states = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = hrformer.create_model("hrformer_t", head="pose").train()
        model.set_grad_checkpointing(ckpt)
        model(x).square().mean().backward()
        states.append({k: v.clone() for k, v in model.state_dict().items() if "running" in k or "tracked" in k})
    plain, checkpointed = states
    assert all(int(v) == 1 for k, v in checkpointed.items() if k.endswith("num_batches_tracked"))
    for k in plain:
        torch.testing.assert_close(checkpointed[k], plain[k], rtol=1e-5, atol=1e-6)
