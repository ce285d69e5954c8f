"""Parity against the full reference outputs in ../shared/parity (every position, not the compact
sample the tests keep): the worst max |ours - ref| / max |ref| per fixture; --json writes every output's.

    python scripts/parity_report.py [--shared ../shared/parity] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import hrformer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from parity import run_outputs  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "parity"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    shared = Path(args.shared)
    spec = importlib.util.spec_from_file_location("make_weights", shared / "make_weights.py")
    make_weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_weights)

    rows = []
    for manifest_path in sorted(shared.glob("*.keys.json")):
        variant = manifest_path.name[: -len(".keys.json")]
        manifest = json.loads(manifest_path.read_text())
        tensors = load_file(str(shared / f"{variant}.safetensors"))
        state = make_weights.state_dict_from_manifest(str(manifest_path))
        models = {False: hrformer.from_original(state)}
        extra = manifest.get("keys_multiscale_extra") or []
        if extra:  # mmpose with multi-scale output: the stage-4 fusion into branches 1-3
            extra_state = {e["name"]: make_weights.deterministic_tensor(e["name"], e["shape"], torch.float32)
                           for e in extra if e["dtype"] == "float32"}
            models[True] = hrformer.from_original({**state, **extra_state})
        worst = 0.0
        for key in sorted(k for k in tensors if k.startswith("input.")):
            size = key.split(".", 1)[1]
            outs = {ms: run_outputs(m, tensors[key]) for ms, m in models.items()}
            for out_key in sorted(k for k in tensors if k.startswith(f"out.{size}.")):
                name = out_key.split(".", 2)[2]
                multiscale = name.startswith("stage4_ms.")
                if multiscale and True not in outs:
                    continue
                ref = tensors[out_key]
                ours = outs[multiscale][name][: ref.shape[0]]
                err = float((ours - ref).abs().max() / ref.abs().max())
                worst = max(worst, err)
                rows.append({"variant": variant, "size": size, "output": name, "rel_err": err})
        print(f"{variant:32s} worst {worst:.2e} over {sum(r['variant'] == variant for r in rows)} outputs", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
