"""timm's model API on HRFormer: ``feature_info`` names real modules, ``forward_intermediates``,
``prune_intermediate_layers``, ``group_matcher`` and the layer-wise learning-rate groups built
from it (``hrformer.optim``)."""

from __future__ import annotations

import math

import pytest
import torch

import hrformer
from hrformer import HRFormer
from hrformer.features import feature_take_indices
from hrformer.heads import HEADS
from hrformer.optim import layer_ids, param_groups_layer_decay
from parity import SMALL

X = torch.randn(1, 3, 48, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return HRFormer(SMALL, head=None).eval()


@pytest.fixture(scope="module")
def feats(backbone):
    with torch.no_grad():
        return backbone.forward_features(X)


# Every registered backbone, and every head on one (the names depend on neither width nor depth).
@pytest.mark.parametrize("name, head", [(n, None) for n in hrformer.list_models()] + [("hrformer_t", h) for h in HEADS])
def test_feature_info_names_modules_the_model_has(name, head):
    # One module per stage, one block: 4x cheaper to build.
    model = hrformer.create_model(name, head=head, modules=(1, 1, 1, 1), blocks=1, features_only=head is None)
    modules = dict(model.named_modules())
    for entry in model.feature_info:
        assert entry["module"] in modules, entry
    if head is None:
        assert [e["index"] for e in model.feature_info] == [0, 1, 2, 3]


def test_feature_info_module_outputs_are_the_maps(backbone, feats):
    """A forward hook on each named module catches the very map ``forward`` returns."""
    caught = {}
    modules = dict(backbone.named_modules())

    def hook(entry):
        def catch(module, args, out):
            caught[entry["index"]] = out[entry["index"]]  # returns None: the output stays as it is
        return catch

    handles = [modules[e["module"]].register_forward_hook(hook(e)) for e in backbone.feature_info]
    try:
        with torch.no_grad():
            maps = backbone(X)
    finally:
        for h in handles:
            h.remove()
    assert len(maps) == len(backbone.feature_info) == 4
    for entry, m in zip(backbone.feature_info, maps):
        assert torch.equal(caught[entry["index"]], m)  # same values; forward returns them in the input's layout
        assert m.shape[1:] == (entry["num_chs"], *(math.ceil(s / entry["reduction"]) for s in X.shape[-2:]))


def test_feature_take_indices_as_timm():
    assert feature_take_indices(4) == ([0, 1, 2, 3], 3)
    assert feature_take_indices(4, 2) == ([2, 3], 3)
    assert feature_take_indices(4, (-1, 0, 0)) == ([0, 3], 3)
    assert feature_take_indices(1, 1) == ([0], 0)
    for bad in (0, 5, (4,), (-5,), (), (1.0,)):
        with pytest.raises(ValueError, match="indices"):
            feature_take_indices(4, bad)
    with pytest.raises(TypeError, match="indices"):
        feature_take_indices(4, "1")


def test_forward_intermediates_are_the_features(backbone, feats):
    with torch.no_grad():
        final, inter = backbone.forward_intermediates(X)
        assert [torch.equal(a, b) for a, b in zip(final, feats)] == [True] * 4
        assert [torch.equal(a, b) for a, b in zip(inter, feats)] == [True] * 4
        only = backbone.forward_intermediates(X, indices=2, intermediates_only=True)
        assert [t.shape for t in only] == [feats[2].shape, feats[3].shape]
        picked = backbone.forward_intermediates(X, indices=[-1, 1], norm=True, stop_early=True,
                                                intermediates_only=True)
        assert torch.equal(picked[0], feats[1]) and torch.equal(picked[1], feats[3])
    with pytest.raises(ValueError, match="NCHW"):
        backbone.forward_intermediates(X, output_fmt="NHWC")
    with pytest.raises(ValueError, match="indices"):
        backbone.forward_intermediates(X, indices=[4])


def test_forward_intermediates_of_a_headed_model_are_pre_head():
    torch.manual_seed(0)
    pose = HRFormer(SMALL.with_(multiscale_output=False), head="pose").eval()  # one map: stride 4
    with torch.no_grad():
        final, inter = pose.forward_intermediates(X)
        assert len(final) == len(inter) == 1 and final[0].shape == (1, SMALL.channels[0], 12, 8)
        assert torch.equal(pose.forward_head(final), pose(X))
    with pytest.raises(ValueError, match="indices"):
        pose.forward_intermediates(X, indices=2)


def test_prune_intermediate_layers_makes_a_backbone_of_the_kept_maps(feats, backbone):
    model = HRFormer(SMALL, head="segmentation", num_classes=3).eval()
    model.load_state_dict(backbone.state_dict(), strict=False)  # same backbone, new head
    assert model.prune_intermediate_layers(2, prune_head=False) == [2, 3]
    assert model.head is not None
    assert model.prune_intermediate_layers((0, -1)) == [0, 3]
    assert model.head is None and model.head_type is None
    assert model.feature_info.channels() == [SMALL.channels[0], SMALL.channels[3]]
    with torch.no_grad():
        maps = model(X)
        assert torch.equal(maps[0], feats[0]) and torch.equal(maps[1], feats[3])
        assert [torch.equal(a, b) for a, b in zip(model.forward_intermediates(X, [0, 3])[1], maps)] == [True] * 2
    # What it now is, it rebuilds as: a backbone with those maps.
    rebuilt = HRFormer(SMALL, **model.model_kwargs())
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.out_indices == (0, 3)
    assert not any(n.startswith("head.") for n in model.state_dict())


def test_group_matcher_orders_the_layers(backbone):
    classifier = HRFormer(SMALL.with_(blocks=2, modules=(1, 1, 2, 1)), head="classification")
    names = [n for n, _ in classifier.named_parameters()]
    fine = layer_ids(names, classifier.group_matcher())
    coarse = layer_ids(names, classifier.group_matcher(coarse=True))
    # Coarse: stem + stage 1, stages 2, 3, 4, the head.
    assert sorted(set(coarse.values())) == [0, 1, 2, 3, 4]
    assert coarse["stem.conv1.conv.weight"] == coarse["stage1.0.conv1.conv.weight"] == 0
    assert coarse["stage3.hr_modules.1.fusion.paths.0.1.conv.weight"] == 2 and coarse["head.fc.weight"] == 4

    def fine_id(prefix):
        ids = {v for n, v in fine.items() if n.startswith(prefix)}
        assert len(ids) == 1, (prefix, ids)
        return ids.pop()

    # Fine: the transition, then per module each block depth (the branches' k-th blocks together),
    # the fusion with the last block, in the order the forward pass runs them.
    order = ["stem.", "stage2.transition.", "stage2.hr_modules.0.branches.0.0.", "stage2.hr_modules.0.branches.1.1.",
             "stage3.transition.", "stage3.hr_modules.0.branches.2.0.", "stage3.hr_modules.0.branches.0.1.",
             "stage3.hr_modules.1.branches.1.0.", "stage4.transition.", "stage4.hr_modules.0.branches.3.1.", "head."]
    ids = [fine_id(p) for p in order]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert fine_id("stage2.hr_modules.0.branches.1.0.") == fine_id("stage2.hr_modules.0.branches.0.0.")
    assert fine_id("stage3.hr_modules.0.fusion.") == fine_id("stage3.hr_modules.0.branches.0.1.")
    assert max(fine.values()) == fine_id("head.") == 1 + (1 + 2) + (1 + 2 * 2) + (1 + 2)
    assert layer_ids(names, backbone.group_matcher())  # a backbone's names match too


def test_layer_decay_param_groups_for_adamw():
    torch.manual_seed(0)
    model = HRFormer(SMALL.with_(blocks=2), head="pose", num_keypoints=3)
    model.stem.requires_grad_(False)  # frozen parameters stay out
    groups = param_groups_layer_decay(model, lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) and set(ids) == trainable  # each trainable parameter exactly once
    by_name = {id(p): n for n, p in model.named_parameters()}
    scale = {by_name[id(p)]: g["lr"] / 1e-3 for g in groups for p in g["params"]}
    decay = {by_name[id(p)]: g["weight_decay"] for g in groups for p in g["params"]}
    # Deeper layers learn faster; the head at the full rate, each layer half the next.
    assert scale["head.conv.weight"] == 1.0
    assert scale["stage1.0.conv1.conv.weight"] < scale["stage2.hr_modules.0.branches.0.0.attn.qkv.weight"] \
        < scale["stage3.hr_modules.0.branches.0.1.attn.qkv.weight"] < scale["stage4.transition.branches.3.0.conv.weight"]
    assert sorted(set(scale.values())) == [0.5**k for k in range(len(set(scale.values())) - 1, -1, -1)]
    tables = [n for n in scale if n.endswith("relative_position_bias_table")]
    assert tables and all(decay[n] == 0.0 for n in tables)
    assert all(decay[n] == 0.0 for n in scale if n.endswith(".bias")) and decay["head.conv.weight"] == 0.05
    torch.optim.AdamW(groups, lr=1e-3)  # refuses a parameter in two groups
    with pytest.raises(ValueError, match="layer_decay"):
        param_groups_layer_decay(model, lr=1e-3, layer_decay=0.0)
