"""Markdown tables from the JSON that ``benchmarks.run`` and ``benchmarks.gpu`` write.

    python -m benchmarks.report benchmarks/results/cpu_main.json [more.json ...]
    python -m benchmarks.report --ratios FILE.json      # speed-up of each mode over the reference

Every list-valued section of each file becomes one table (its rows' keys are the columns), so the
figures in ``benchmarks/RESULTS.md`` are pasted from measurements, never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if v and abs(v) < 1e-2 else f"{v:g}"
    return str(v)


def markdown_table(rows: List[Dict[str, Any]], drop: tuple = ()) -> str:
    cols = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in drop]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def ratio_table(rows: List[Dict[str, Any]]) -> str:
    """One line per (model, dtype, size, batch): the reference's median ms, then each mode's speed-up
    over it (same run), e.g. ``| hrformer_t | fp32 | 256x192 | 1 | 268.1 | 1.67 | 3.21 |``."""
    modes = [m for m in dict.fromkeys(r["mode"] for r in rows) if m != "reference"]
    lines = ["| model | dtype | size | batch | original ms | " + " | ".join(modes) + " |",
             "|" + "---|" * (5 + len(modes))]
    keys = dict.fromkeys((r["model"], r["dtype"], r["size"], r["batch"]) for r in rows)
    for key in keys:
        group = {r["mode"]: r for r in rows if (r["model"], r["dtype"], r["size"], r["batch"]) == key}
        ref = group.get("reference", {}).get("ms", "")
        cells = [_cell(group[m]["speedup_vs_reference"]) if m in group else "" for m in modes]
        lines.append("| " + " | ".join([*map(str, key), _cell(ref), *cells]) + " |")
    errors = [r for r in rows if r.get("max_rel_error", "") != ""]
    if errors:
        # Worst case per mode over the table's rows: the rounding each path costs.
        worst = {m: max(r["max_rel_error"] for r in errors if r["mode"] == m) for m in modes
                 if any(r["mode"] == m for r in errors)}
        lines += ["", "max error relative to the fp32 eager outputs: "
                  + ", ".join(f"{m} {v:.2g}" for m, v in worst.items())]
    return "\n".join(lines)


def report(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    header = ", ".join(f"{k} {v}" for k, v in data.items() if not isinstance(v, list))
    out = [f"### {path}", "", header, ""]
    for section, rows in data.items():
        if isinstance(rows, list) and rows:
            out += [f"**{section}**", "", markdown_table(rows, drop=("size",) if section == "train" else ()), ""]
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--ratios", action="store_true",
                    help="only the speed-up of every mode over the reference, one line per model and batch")
    args = ap.parse_args(argv)
    if args.ratios:
        for p in args.files:
            with open(p) as f:
                print(f"### {p}\n\n{ratio_table(json.load(f)['inference'])}\n")
        return 0
    print("\n".join(report(p) for p in args.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
