"""Derive the compact parity fixtures in tests/fixtures/parity from ../shared/parity.

For every variant: the key manifest (names, shapes, dtypes; gzipped JSON) and, for every stored
output, its shape, the batch elements kept, max|ref| over the whole tensor and the values at a fixed
random sample of positions (safetensors). The inputs are not stored: the tests regenerate them
with ``torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(0))``, which this script
checks against the stored inputs.

Usage: python scripts/make_parity_fixtures.py [--src ../shared/parity] [--samples 1024] [--only 'official_seg_*']
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(ROOT.parent / "shared" / "parity"))
    ap.add_argument("--dst", default=str(ROOT / "tests" / "fixtures" / "parity"))
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--only", default="*", help="wildcard on the variant names to (re)generate")
    args = ap.parse_args()
    src, dst = Path(args.src), Path(args.dst)
    dst.mkdir(parents=True, exist_ok=True)
    for manifest_path in sorted(src.glob("*.keys.json")):
        variant = manifest_path.name[: -len(".keys.json")]
        if not fnmatch.fnmatchcase(variant, args.only):
            continue
        manifest = json.loads(manifest_path.read_text())
        tensors = load_file(str(src / f"{variant}.safetensors"))
        keys = [[e["name"], e["shape"], e["dtype"]] for e in manifest["keys"]]
        extra = [[e["name"], e["shape"], e["dtype"]] for e in manifest.get("keys_multiscale_extra", [])]
        outputs = {}
        samples = {}
        gen = torch.Generator().manual_seed(1234)
        for name, t in sorted(tensors.items()):
            if name.startswith("input."):
                h, w = (int(s) for s in name.split(".", 1)[1].split("x"))
                regen = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
                assert torch.equal(regen, t), f"{variant}: {name} is not the seed-0 recipe"
                continue
            flat = t.reshape(-1)
            idx = torch.randperm(flat.numel(), generator=gen)[: args.samples].sort().values
            samples[f"idx.{name}"] = idx
            samples[f"val.{name}"] = flat[idx].clone()
            outputs[name] = {"shape": list(t.shape), "absmax": float(t.abs().max())}
        meta = {"variant": variant, "keys": keys, "keys_multiscale_extra": extra, "outputs": outputs,
                "sizes": sorted({n.split(".")[1] for n in outputs})}
        with gzip.open(dst / f"{variant}.json.gz", "wt") as f:
            json.dump(meta, f, separators=(",", ":"))
        save_file(samples, str(dst / f"{variant}.samples.safetensors"))
        print(f"{variant}: {len(keys)} keys (+{len(extra)} multiscale), {len(outputs)} outputs")


if __name__ == "__main__":
    main()
