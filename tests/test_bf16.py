"""bf16 inference: ``fuse_for_inference(dtype=torch.bfloat16)`` folds BatchNorm in fp32, casts the
weights, takes fp32 images and returns fp32 outputs within 3e-2 of the fp32 model for every head,
keeps NaN/Inf, and warns (with the reason) on CPUs without native bf16."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from hrformer import HRFormer
from hrformer.fast import cpu, fuse_for_inference, kernels
from hrformer.heads import HEADS
from parity import SMALL

X = torch.randn(1, 3, 40, 32, generator=torch.Generator().manual_seed(0))
TOL = 3e-2  # bf16 keeps 8 bits of mantissa; errors add up over ~20 layers


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


# Fusing in bf16 warns on CPUs without native bf16; that warning is tested below.
quiet_bf16 = pytest.mark.filterwarnings("ignore:hrformer. fuse_for_inference.dtype=torch.bfloat16:UserWarning")


@pytest.mark.parametrize("head, kwargs", [
    ("classification", {}), ("pose", {}), ("segmentation", {}), ("ocr", {"return_aux": True}), (None, {}),
])
@quiet_bf16
def test_bf16_outputs_are_fp32_and_close_for_every_head(head, kwargs, randomise_bn):
    torch.manual_seed(0)
    n = {HEADS[head].output_arg: 5} if head else {}
    model = randomise_bn(HRFormer(SMALL, head=head, **n).eval())
    fused = copy.deepcopy(model).fuse_for_inference(dtype=torch.bfloat16)
    assert next(fused.parameters()).dtype == torch.bfloat16 and fused.is_fused
    with torch.no_grad():
        ref, out = _as_list(model(X, **kwargs)), _as_list(fused(X, **kwargs))
    assert len(out) == len(ref)
    for a, b in zip(out, ref):
        assert a.dtype == torch.float32 and a.shape == b.shape
        assert (a - b).abs().max() <= TOL * b.abs().max()
    if head == "pose":
        with torch.no_grad():
            # forward_features and the head alone also take and give fp32
            feats = fused.forward_features(X)
            assert len(feats) == 4 and all(f.dtype == torch.float32 for f in feats)
            assert fused.forward_head(feats).dtype == torch.float32
            # NaN and Inf reach the output as in the fp32 model
            x = X.clone()
            x[0, :, 10, 10] = float("inf")
            assert not torch.isfinite(fused(x)).all()
            assert torch.isnan(fused(torch.full_like(X, float("nan")))).all()


@quiet_bf16
def test_bf16_model_runs_the_fused_kernels_where_onednn_takes_bf16(monkeypatch, randomise_bn):
    """Convolution + activation (+ residual) as one oneDNN kernel in bf16 too, where oneDNN runs bf16
    (AVX-512 and newer); the switch gives the public ops, with outputs within bf16's rounding."""
    calls = []
    onednn_conv_act = kernels._onednn_conv_act
    monkeypatch.setattr(kernels, "_onednn_conv_act", lambda x, *a: calls.append(x.dtype) or onednn_conv_act(x, *a))
    torch.manual_seed(0)
    model = randomise_bn(HRFormer(SMALL, head="pose", num_keypoints=5).eval())
    fused = copy.deepcopy(model).fuse_for_inference(dtype=torch.bfloat16)
    monkeypatch.setattr(kernels, "_verified", {})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a kernel failing its bf16 self-check
        ref = model(X)
        fast = fused(X)
        expected = kernels.fast_path_enabled() and torch.bfloat16 in kernels.kernel_dtypes()
        assert set(calls) == ({torch.bfloat16} if expected else set())
        monkeypatch.setattr(kernels, "_enabled", False)  # the switch, restored after the test
        calls.clear()
        public = fused(X)
        assert calls == []
    for out in (fast, public):
        assert out.dtype == torch.float32 and (out - ref).abs().max() <= TOL * ref.abs().max()


@pytest.mark.parametrize("flags, native", [
    ({"avx2", "fma"}, False),  # AVX2-only AMD EPYC
    ({"avx2", "avx512f", "avx512bw", "avx512_vnni"}, False),  # AVX-512 without bf16 (Ice Lake)
    ({"avx2", "avx512f", "avx512_bf16"}, True),  # Cooper Lake, Zen 4
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, True),  # Sapphire Rapids
])
def test_native_bf16_from_cpu_flags(flags, native, monkeypatch):
    assert cpu.native_bf16(flags) is native
    info = cpu.machine_info(flags)
    assert info["native_bf16"] is native and info["avx2"] and info["cpu_count"] >= 1
    assert info["machine_kind"] == ("amx" if "amx_bf16" in flags else "avx512_bf16" if native
                                    else "avx512" if "avx512f" in flags else "avx2")
    # The warning follows the flags: on a CPU without native bf16 it says why bf16 will be slower.
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fuse_for_inference(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1)), dtype=torch.bfloat16)
    messages = [str(w.message) for w in caught if "bf16" in str(w.message)]
    if native:
        assert messages == []
    else:
        assert len(messages) == 1 and "AMX" in messages[0] and "slower" in messages[0]


@quiet_bf16
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_a_bf16_model_says_which_inputs_it_takes(dtype):
    model = HRFormer(SMALL, head="pose").eval().fuse_for_inference(dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"fused for torch.bfloat16 inference and takes float32 images.*x.float\(\)"):
        model(X.to(dtype))


def test_dtype_is_checked():
    model = HRFormer(SMALL, head=None)
    with pytest.raises(ValueError, match="torch.bfloat16"):
        model.fuse_for_inference(dtype=torch.float16)


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "fma"}, torch.float32),                                  # AMD EPYC, most CPUs: emulated bf16
    ({"avx2", "avx512f", "avx512_bf16"}, torch.bfloat16),              # native bf16 products
    ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, torch.bfloat16),     # AMX
])
def test_auto_dtype_takes_bf16_only_where_the_cpu_computes_it(monkeypatch, caplog, flags, expected):
    import logging

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    model = HRFormer(SMALL, head="pose").eval()
    with caplog.at_level(logging.INFO, logger="hrformer"):
        fuse_for_inference(model, dtype="auto")
    assert model.stem.conv1.conv.weight.dtype == expected and model.is_fused
    assert "dtype='auto') took" in caplog.text
    out = model(torch.randn(1, 3, 64, 48))
    assert out.dtype == torch.float32  # fp32 in, fp32 out either way
