"""One resolver for every command: the text a user gives for a model -> the model.

``SOURCE`` (``--model`` of ``pose`` / ``segment``, the positional of ``export`` / ``info``) is

* a registered architecture, ``hrformer_s``: built untrained (``pose`` / ``segment`` refuse it
  without ``--weights``; ``export`` warns);
* ``arch.tag``, ``hrformer_s.coco_256x192``: the tag's model with its published weights;
* a directory or ``.safetensors`` file written by ``save_pretrained`` (``config.json`` inside /
  beside it), or ``local-dir:PATH``: :func:`hrformer.from_pretrained`;
* ``hf-hub:org/name[@revision]``: a model pushed with ``push_to_hub``;
* an original checkpoint (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` in the official or
  mmpose layout): architecture, head and semantics read from the tensors.

``--weights FILE`` with an architecture or tag: FILE is any of the files above, or a state dict in
hrformer's own layout without ``config.json`` (then the architecture comes from SOURCE and the head
from the file's tensors). Files load through :func:`hrformer.factory.model_from_checkpoint`, the
package's one loading path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

from torch import nn

from .errors import UserError, fail, one_line, user_errors

if TYPE_CHECKING:
    import argparse

    from ..weights import Checkpoint

def add_image_and_model_arguments(p: "argparse.ArgumentParser", weights_kind: str) -> None:
    """The arguments every image command reads its input and model from: ``image``, ``--model``
    (a SOURCE, above; ``weights_kind`` names what its tag must carry, e.g. "pose weights (e.g.
    hrformer_s.coco_256x192)") and ``--weights``."""
    p.add_argument("image", help="an image file Pillow reads")
    p.add_argument("--model", required=True,
                   help=f"arch.tag with {weights_kind}, a saved model directory / .safetensors, hf-hub:org/name, "
                        "an original checkpoint, or a bare arch with --weights")
    p.add_argument("--weights", help="a checkpoint for --model (an architecture or tag)")


DEFAULT_HEAD = "default"
SAVED_PREFIXES = ("hf-hub:", "local-dir:")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


@dataclass
class Resolved:
    """A resolved model: the model (eval mode), how it was found, whether its weights are trained."""

    model: nn.Module
    description: str
    trained: bool
    untrained_head: bool = False


def _head_kwargs(head: Any) -> Dict[str, Any]:
    return {} if head == DEFAULT_HEAD else {"head": head}


def _saved_config(path: Path) -> Optional[Dict[str, Any]]:
    """The hrformer ``config.json`` of a saved model (directory or ``.safetensors``), or None."""
    config = path / "config.json" if path.is_dir() else path.parent / "config.json"
    if path.is_file() and path.suffix != ".safetensors" or not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as e:
        fail(f"{config}: unreadable config.json ({one_line(str(e))})")
    if not isinstance(data, dict) or not {"config", "model_kwargs"} <= set(data):
        return None  # someone else's config.json (e.g. a Hugging Face transformers model)
    return data


def read_weights_file(path: str) -> "Checkpoint":
    """A checkpoint file read once, in our key names, with its layout (any mistake a user error)."""
    from ..weights import read_weights

    with user_errors(path):
        return read_weights(path)


def _check_saved_architecture(saved: Mapping[str, Any], arch_name: str, path: str) -> None:
    """A saved model named with ``--model ARCH --weights DIR`` must be that architecture."""
    from ..factory import get_model_entry, split_model_name

    held = str(saved.get("architecture") or "")
    arch = split_model_name(arch_name)[0]
    channels = tuple(saved.get("config", {}).get("channels") or ())
    expected = tuple(get_model_entry(arch).config.channels)
    if held and split_model_name(held)[0] != arch or channels and channels != expected:
        what = held or "a model with channels " + "/".join(map(str, channels))
        fail(f"{path} holds {'a ' + held + ' model' if held else what} (its config.json), not {arch_name}")


def _architecture(name: str) -> Tuple[str, str]:
    from ..factory import get_model_entry, split_model_name

    arch, tag = split_model_name(name)
    with user_errors(""):
        get_model_entry(arch)
        if tag:
            from ..weights import get_pretrained_cfg

            get_pretrained_cfg(arch, tag)
    return arch, tag


def load_file(path: str, arch_name: Optional[str] = None, head: Any = DEFAULT_HEAD,
              name_hint: str = "hrformer_t") -> Resolved:
    """A model from a file or directory (``arch_name``: the architecture or tag it belongs to)."""
    import hrformer

    local = Path(path)
    saved = _saved_config(local)
    if local.is_dir() and saved is None:
        fail(f"{path}: a directory without an hrformer config.json, not a model saved by hrformer.save_pretrained")
    if saved is not None:
        held = str(saved.get("architecture") or "")
        if arch_name:
            _check_saved_architecture(saved, arch_name, path)
        with user_errors(path):
            model = hrformer.from_pretrained(path, **_head_kwargs(head))
        untrained_head = head != DEFAULT_HEAD and head != saved.get("model_kwargs", {}).get("head")
        return Resolved(model, f"{path} (saved {held or 'model'})", True, untrained_head)
    return model_from_file(read_weights_file(path), arch_name, head, name_hint)


def model_from_file(checkpoint: "Checkpoint", arch_name: Optional[str] = None, head: Any = DEFAULT_HEAD,
                    name_hint: str = "hrformer_t") -> Resolved:
    """The model a checkpoint file holds, through the package's one loading path: the head (and for
    an original layout the architecture and semantics) from the file, unless ``head`` names another
    (then the head is untrained)."""
    from ..factory import model_from_checkpoint

    path = checkpoint.source
    if checkpoint.layout == "hrformer" and not arch_name:
        fail(f"{path}: weights in hrformer's layout without a config.json beside them; name the architecture "
             f"they belong to (e.g. --model {name_hint} --weights {path})")
    if arch_name:
        _architecture(arch_name)
    with user_errors(path):
        model = model_from_checkpoint(checkpoint, arch_name, **_head_kwargs(head))
    held = checkpoint.implied.get("head")
    what = f"{arch_name} + {path}" if checkpoint.layout == "hrformer" else f"{path} ({checkpoint.layout} checkpoint)"
    return Resolved(model, what, True, head not in (DEFAULT_HEAD, held))


def looks_like_path(text: str) -> bool:
    return (os.sep in text or "/" in text or text.startswith((".", "~"))
            or Path(text).suffix.lower() in CHECKPOINT_SUFFIXES + (".json",))


def load_model(
    source: str,
    weights: Optional[str] = None,
    head: Any = DEFAULT_HEAD,
    *,
    task: Optional[str] = None,
    source_flag: str = "",
) -> Resolved:
    """Resolve ``source`` (+ ``--weights``) as the module docstring says; ``task`` ("pose",
    "segmentation") refuses untrained models and models whose head is for another task.

    Raises :class:`UserError` for every mistake a user can make.
    """
    import hrformer

    what = f"{source_flag} {source}".strip()
    if weights is not None:
        if os.path.exists(source) or source.startswith(SAVED_PREFIXES):
            fail(f"{what} is already a saved model or checkpoint: give it alone, without --weights")
        if not os.path.exists(weights):
            fail(f"--weights {weights}: no such file or directory")
        _architecture(source)
        resolved = load_file(weights, source, head, name_hint=source)
    elif source.startswith(SAVED_PREFIXES):
        with user_errors(what):
            model = hrformer.create_model(source, pretrained=True, **_head_kwargs(head))
        resolved = Resolved(model, source, True, head != DEFAULT_HEAD)
    elif os.path.exists(source):
        if not os.access(source, os.R_OK):
            fail(f"{what}: not readable (permission denied)")
        resolved = load_file(source, None, head)
    elif looks_like_path(source):
        fail(f"{what}: no such file or directory (a Hub repository is named hf-hub:org/name; a registered "
             "model hrformer_t or hrformer_s.coco_256x192: see hrformer list)")
    else:
        arch, tag = _architecture(source)
        if not tag and task is not None:
            kind = "'hrformer_*coco*'" if task == "pose" else "'*_ocr'"
            fail(f"{what}: a bare architecture has no {task} weights; name a tag (hrformer list --pretrained "
                 f"{kind}) or give --weights FILE")
        with user_errors(what):
            model = hrformer.create_model(source, pretrained=bool(tag), **_head_kwargs(head))
        tag_head = getattr(getattr(model, "pretrained_cfg", None), "model_kwargs", {}).get("head") if tag else None
        resolved = Resolved(model.eval(), source if tag else f"{source} (untrained)", bool(tag),
                            bool(tag) and head != DEFAULT_HEAD and head != tag_head)
    if task is not None:
        from ..inference import check_model

        with user_errors(what):
            check_model(resolved.model.eval(), task)
        if resolved.untrained_head:
            fail(f"{what}: its head is not trained for {task}")
    return resolved


__all__ = ["CHECKPOINT_SUFFIXES", "DEFAULT_HEAD", "Resolved", "UserError", "load_file", "looks_like_path",
           "load_model", "model_from_file", "read_weights_file"]
