"""Behaviour users rely on: output shapes at any input size, feature_info, heads, gradients,
training helpers and clear errors, for every registered model."""

from __future__ import annotations

import copy
import importlib
import math
import re
from pathlib import Path

import pytest
import torch

import hrformer
from hrformer.layers import LocalWindowAttention
from hrformer.weights import CheckpointLayoutError
from hrformer.profiling import count_params

MODELS = hrformer.list_models()
# The HRFormer-B family (50M parameters) runs in the slow suite, T and S in the default one.
MODEL_PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n.startswith("hrformer_b") else n for n in MODELS]
SIZES = [(224, 224), (256, 192), (200, 152), (33, 47), (32, 32)]


def branch_sizes(h: int, w: int):
    """Spatial sizes at strides 4, 8, 16, 32: every stride-2 conv rounds up."""
    sizes = []
    h, w = math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2)
    for _ in range(4):
        sizes.append((h, w))
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return sizes


def test_registry_lists_all_variants():
    assert {"hrformer_t", "hrformer_s", "hrformer_b"} <= set(MODELS)
    assert {"hrformer_t_hrnet", "hrformer_s_hrnet", "hrformer_b_hrnet"} <= set(MODELS)
    assert hrformer.list_models("hrformer_?") == ["hrformer_b", "hrformer_s", "hrformer_t"]


# Every size on the smallest model; one size that pads windows at every branch on the others.
SHAPE_CASES = [
    pytest.param(n, s, id=f"{n}-{s[0]}x{s[1]}", marks=[pytest.mark.slow] if n.startswith("hrformer_b") else [])
    for n in MODELS for s in (SIZES if n == "hrformer_t" else [(61, 45)])
]


@pytest.mark.parametrize("name, size", SHAPE_CASES)
def test_feature_shapes_and_info(name, size):
    torch.manual_seed(0)
    model = hrformer.create_model(name, features_only=True)
    info = model.feature_info
    assert info.reduction() == [4, 8, 16, 32]
    assert info.channels() == list(hrformer.create_model(name).config.channels)
    for training in (True, False):
        model.train(training)
        for batch in (1, 2):
            with torch.no_grad():
                feats = model(torch.randn(batch, 3, *size))
            assert [tuple(f.shape) for f in feats] == [
                (batch, c, h, w) for c, (h, w) in zip(info.channels(), branch_sizes(*size))
            ]
            assert all(torch.isfinite(f).all() for f in feats)


@pytest.mark.parametrize("name", MODEL_PARAMS)
def test_heads_shapes(name):
    x = torch.randn(2, 3, 61, 45)
    (h, w) = branch_sizes(61, 45)[0]
    cls = hrformer.create_model(name, num_classes=10).eval()
    pose = hrformer.create_model(name, head="pose", num_keypoints=5).eval()
    seg = hrformer.create_model(name, head="segmentation", num_classes=7).eval()
    with torch.no_grad():
        assert cls(x).shape == (2, 10)
        assert cls.forward_head(cls.forward_features(x), pre_logits=True).shape == (2, 2048)
        assert pose(x).shape == (2, 5, h, w)
        assert len(pose.forward_features(x)) == 1
        assert seg(x).shape == (2, 7, h, w)


def test_out_indices_select_maps():
    model = hrformer.create_model("hrformer_t", features_only=True, out_indices=(1, 3)).eval()
    assert model.feature_info.channels() == [36, 144]
    assert model.feature_info.reduction() == [8, 32]
    feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [36, 144]
    with pytest.raises(ValueError, match="out_indices"):
        hrformer.create_model("hrformer_t", features_only=True, out_indices=(4,))
    with pytest.raises(ValueError, match="out_indices"):
        hrformer.create_model("hrformer_t", head="pose", features_only=True, out_indices=(1,), multiscale_output=False)


@pytest.mark.parametrize("head", ["classification", "pose", "segmentation", None])
@pytest.mark.parametrize("name", ["hrformer_t", "hrformer_t_hrnet"])
def test_gradients_reach_every_parameter(name, head, head_kwargs):
    torch.manual_seed(0)
    model = hrformer.create_model(name, head=head, **head_kwargs(head, 5)).train()
    out = model(torch.randn(2, 3, 61, 45))
    loss = sum(o.float().square().mean() for o in out) if isinstance(out, list) else out.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no (finite) gradient for {missing[:5]}"
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"zero gradient for {zero[:5]}"


def test_ablation_options_build_and_run():
    x = torch.randn(1, 3, 61, 45)
    for kwargs in ({"ffn_dw": False}, {"shift_windows": True}, {"mask_padding": True},
                   {"shift_windows": True, "mask_padding": True}, {"block": "basic"}, {"rel_pos_bias": False}):
        model = hrformer.create_model("hrformer_t", head=None, **kwargs).eval()
        with torch.no_grad():
            feats = model(x)
        assert all(torch.isfinite(f).all() for f in feats), kwargs
    no_dw = hrformer.create_model("hrformer_t", ffn_dw=False)
    assert not any("ffn.dw." in n for n, _ in no_dw.named_parameters())
    assert count_params(no_dw) < count_params(hrformer.create_model("hrformer_t"))


@pytest.mark.parametrize("option", ["shift_windows", "mask_padding"])
def test_window_options_reach_every_block_and_change_the_maps(option):
    """The option set on create_model arrives in every attention block (shifted windows: the odd
    blocks, by half a window) and changes every map of an input whose maps all need window padding
    (64x48: 16x12, 8x6, 4x3, 2x2 with 7x7 windows); the fused model keeps it."""
    kwargs = dict(head=None, modules=(1, 1, 1, 1), blocks=2)  # two blocks: one shifted
    torch.manual_seed(0)
    off = hrformer.create_model("hrformer_t", **kwargs).eval()
    on = hrformer.create_model("hrformer_t", **kwargs, **{option: True}).eval()
    on.load_state_dict(off.state_dict())
    window = on.config.window_size
    for model, enabled in ((off, False), (on, True)):
        attns = {n: m for n, m in model.named_modules() if isinstance(m, LocalWindowAttention)}
        assert len(attns) == 2 * (2 + 3 + 4)
        for name, attn in attns.items():
            odd_block = int(name.split(".")[-2]) % 2 == 1
            shift = window // 2 if enabled and option == "shift_windows" and odd_block else 0
            assert (attn.shift_size, attn.mask_padding) == (shift, enabled and option == "mask_padding"), name
    x = torch.randn(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out, fused = off(x), on(x), copy.deepcopy(on).fuse_for_inference()(x)
    for r, o, f in zip(ref, out, fused):
        assert (o - r).abs().max() > 1e-3 * r.abs().max(), f"{option}=True left a map unchanged"
        assert (f - o).abs().max() <= 1e-5 * o.abs().max()


def test_readme_dotted_names_resolve():
    """Every `hrformer.a.b` the README names is importable as written (``hrformer.profile`` is the
    function, ``hrformer.profiling`` the module)."""
    root = Path(__file__).resolve().parent.parent
    readme = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    names = set(re.findall(r"`(hrformer(?:\.[A-Za-z_]\w*)+)", readme))
    assert "hrformer.profiling.paper_pose_gflops" in names
    missing = []
    for name in sorted(names):
        parts = name.split(".")
        obj = importlib.import_module("hrformer")
        for depth, part in enumerate(parts[1:], start=2):
            if not hasattr(obj, part):
                try:
                    importlib.import_module(".".join(parts[:depth]))
                except ImportError:
                    pass
            if not hasattr(obj, part):
                missing.append(name)
                break
            obj = getattr(obj, part)
    assert not missing, f"the README names what does not exist: {missing}"
    assert callable(hrformer.profile) and callable(hrformer.profiling.paper_pose_gflops)


def test_drop_path_schedule_is_linear_over_transformer_blocks():
    model = hrformer.create_model("hrformer_s", drop_path_rate=0.2)
    rates = []
    for stage in (model.stage2, model.stage3, model.stage4):
        for mod in stage.hr_modules:
            rates += [getattr(block.drop_path, "drop_prob", 0.0) for block in mod.branches[0]]
    assert len(rates) == 2 * (1 + 4 + 2)
    expected = torch.linspace(0, 0.2, len(rates)).tolist()
    assert rates == pytest.approx(expected)


def test_grad_checkpointing_same_gradients():
    torch.manual_seed(0)
    model = hrformer.create_model("hrformer_t", head="pose").train()
    x = torch.randn(2, 3, 64, 48)

    def grads():
        model.zero_grad()
        model(x).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    model.eval()  # BN statistics must not move between the two passes
    ref = grads()
    model.set_grad_checkpointing(True)
    ckpt = grads()
    for n in ref:
        torch.testing.assert_close(ckpt[n], ref[n], rtol=1e-4, atol=1e-6)


def test_no_weight_decay_names_bias_tables():
    model = hrformer.create_model("hrformer_t")
    names = model.no_weight_decay()
    assert names and all(n.endswith("relative_position_bias_table") for n in names)
    assert names <= {n for n, _ in model.named_parameters()}
    assert not hrformer.create_model("hrformer_t", rel_pos_bias=False).no_weight_decay()


def test_frozen_stages_and_norm_eval():
    model = hrformer.create_model("hrformer_t", frozen_stages=2, norm_eval=True).train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.stage2.parameters())
    assert all(p.requires_grad for p in model.stage3.parameters())
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.stage3.hr_modules[0].branches[0][0].norm1.training  # LayerNorm unaffected


def test_reset_classifier():
    model = hrformer.create_model("hrformer_t")
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    pose = hrformer.create_model("hrformer_t", head="pose")
    pose.reset_classifier(21)
    assert pose.eval()(torch.randn(1, 3, 64, 48)).shape[1] == 21


def test_in_chans():
    model = hrformer.create_model("hrformer_t", in_chans=1, head=None).eval()
    assert model(torch.randn(1, 1, 40, 40))[0].shape == (1, 18, 10, 10)


# ------------------------------------------------------------------------------- clear errors
@pytest.fixture(scope="module")
def tiny():
    return hrformer.create_model("hrformer_t").eval()


def test_error_wrong_rank(tiny):
    with pytest.raises(ValueError, match=r"4-D input"):
        tiny(torch.randn(3, 64, 64))


def test_error_wrong_channels(tiny):
    with pytest.raises(ValueError, match=r"expected 3 input channels, got 4"):
        tiny(torch.randn(1, 4, 64, 64))


def test_error_integer_input(tiny):
    with pytest.raises(TypeError, match=r"floating-point"):
        tiny(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_error_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match=r"hrformer_s") as e:
        hrformer.create_model("hrformr_s")
    assert "Did you mean" in str(e.value)


def test_error_unknown_head():
    with pytest.raises(ValueError, match="head"):
        hrformer.create_model("hrformer_t", head="detection")


def test_error_state_dict_matches_no_layout():
    with pytest.raises(CheckpointLayoutError, match="no known HRFormer layout"):
        hrformer.from_original({"foo.weight": torch.zeros(1)})


def test_error_state_dict_names_missing_and_unexpected_keys():
    from parity import original_state_dict

    sd = original_state_dict("official_cls_hrt_tiny")
    del sd["stage3.0.branches.1.0.norm1.bias"]
    sd["stage3.0.branches.1.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointLayoutError) as e:
        hrformer.from_original(sd)
    msg = str(e.value)
    assert "missing" in msg and "stage3.hr_modules.0.branches.1.0.norm1.bias" in msg
    assert "unexpected" in msg and "stage3.hr_modules.0.branches.1.0.extra.weight" in msg
