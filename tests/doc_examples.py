"""Run the ```python blocks of README.md and docs/*.md as written, offline, in a temporary directory.

A page's ``## section`` is one example: its blocks run in order, in one namespace. The first line
of a block may mark it:

- ``# network``: needs downloads or files fetched by hand; never run;
- ``# slow``: runs only in the slow suite (``-m slow``);
- ``# cuda``: runs only where CUDA is available.

Task examples get small untrained models of the named architecture (same channels and heads, one
module per stage and one block), whatever weights they ask for: the examples' code paths run, not
the released weights.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import hrformer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKERS = ("network", "slow", "cuda")


def page_sections(page: Path) -> Dict[str, List[str]]:
    """The ```python blocks of each ``## section`` of a page that has any, by section title."""
    text = page.read_text()
    sections: Dict[str, List[str]] = {}
    for match in re.finditer(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M):
        blocks = re.findall(r"^```python\n(.*?)^```", match.group(2), flags=re.S | re.M)
        if blocks:
            sections[match.group(1).strip()] = blocks
    return sections


def block_marker(block: str) -> Optional[str]:
    """``network``, ``slow`` or ``cuda`` when the block's first line marks it so, else None."""
    first = block.lstrip().splitlines()[0] if block.strip() else ""
    found = re.match(r"#\s*(\w+)", first)
    return found.group(1) if found and found.group(1) in MARKERS else None


def run_section(page: Path, title: str, tmp_path: Path, monkeypatch, small: bool = True, shrink_input: bool = False,
                namespace: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Run the section's blocks (all but ``# network`` ones) in ``tmp_path``, offline, and return
    their namespace (``namespace`` carries on an earlier section's). With ``small``,
    ``hrformer.create_model`` gives the small untrained model in eval mode (``shrink_input``: with a
    quarter of the tag's input pixels)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if small:
        create: Callable[..., hrformer.HRFormer] = hrformer.create_model

        def untrained(name, *args, pretrained=False, **kwargs):
            model = create(name, *args, modules=(1, 1, 1, 1), blocks=1, **kwargs).eval()
            if shrink_input:
                c, h, w = model.pretrained_cfg.input_size
                model.pretrained_cfg = dataclasses.replace(model.pretrained_cfg, input_size=(c, h // 2, w // 2))
            return model

        monkeypatch.setattr(hrformer, "create_model", untrained)
    blocks = [b for b in page_sections(page)[title] if block_marker(b) != "network"]
    assert blocks, f"no runnable python example in {page.name} section {title!r}"
    namespace = {} if namespace is None else namespace
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page.relative_to(ROOT)} {title!r} block {i}", "exec"), namespace)
    return namespace
