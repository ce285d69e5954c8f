"""The original HRFormer classification code as the benchmarks' reference implementation.

Nothing of the original is shipped here: point ``HRFORMER_ORIGINAL`` at the ``cls`` folder of a
checkout of the official repository (HRNet/HRFormer on GitHub), then

    HRFORMER_ORIGINAL=/path/to/HRFormer/cls python -m benchmarks.run --reference benchmarks.original:build
    HRFORMER_ORIGINAL=... python -m benchmarks.gpu --reference benchmarks.original:build

``build(arch)`` returns the original ``HighResolutionTransformer`` run up to stage 4 (the four fused
maps), configured from the exact original configs kept in the parity manifests
(``HRFORMER_PARITY``, default ``../shared/parity``). Two things are bridged without editing the
original files: its three timm helpers (``trunc_normal_``, ``to_2tuple``, ``DropPath``) get minimal
stand-ins when timm is not installed, and ``multihead_isa_attention.py`` gets the
``torch.nn.functional`` import it lacks (it uses ``F.pad`` only when a map needs window padding,
e.g. at 256x192, which the original ImageNet code never hits at 224x224).
"""

from __future__ import annotations

import collections.abc
import importlib
import json
import os
import sys
import types
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from hrformer.layers.drop_path import DropPath

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARITY = os.environ.get("HRFORMER_PARITY", os.path.join(_ROOT, "..", "shared", "parity"))
VARIANTS = {"hrformer_t": "tiny", "hrformer_s": "small", "hrformer_b": "base"}


def _install_timm_stand_ins() -> None:
    try:
        importlib.import_module("timm.models.layers")
        return
    except ImportError:
        pass
    layers = types.ModuleType("timm.models.layers")
    layers.trunc_normal_ = nn.init.trunc_normal_
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, collections.abc.Iterable) else (x, x)
    layers.DropPath = DropPath  # the same stochastic depth as the original's timm one
    for name in ("timm", "timm.models"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["timm.models.layers"] = layers


def _import_original():
    root = os.environ.get("HRFORMER_ORIGINAL")
    if not root or not os.path.isfile(os.path.join(root, "models", "hrt.py")):
        raise RuntimeError("set HRFORMER_ORIGINAL to the 'cls' folder of an official HRFormer checkout")
    _install_timm_stand_ins()
    # A bare namespace for the original 'models' package: its __init__ imports every other
    # architecture of that repository (and all of timm with them).
    package = types.ModuleType("models")
    package.__path__ = [os.path.join(root, "models")]
    sys.modules.setdefault("models", package)
    isa = importlib.import_module("models.modules.multihead_isa_attention")
    isa.F = F
    return importlib.import_module("models.hrt")


class OriginalBackbone(nn.Module):
    """The original classifier's forward pass, stopped after stage 4."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        with open(os.path.join(PARITY, f"official_cls_hrt_{VARIANTS[arch]}.keys.json")) as f:
            cfg = json.load(f)["config"]["MODEL"]["HRT"]
        self.net = _import_original().HighResolutionTransformer(cfg, num_classes=1000)

    def original_state_dict(self) -> Dict[str, torch.Tensor]:
        """The weights with the original key names (what :func:`hrformer.from_original` reads)."""
        return self.net.state_dict()

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        m = self.net
        x = m.layer1(m.relu(m.bn2(m.conv2(m.relu(m.bn1(m.conv1(x)))))))
        ys = m.stage2([t(x) if t is not None else x for t in m.transition1])
        for transition, stage, cfg in ((m.transition2, m.stage3, m.stage3_cfg), (m.transition3, m.stage4, m.stage4_cfg)):
            ys = stage([transition[i](ys[-1]) if transition[i] is not None else ys[i]
                        for i in range(cfg["NUM_BRANCHES"])])
        return ys


def build(arch: str) -> nn.Module:
    return OriginalBackbone(arch)
