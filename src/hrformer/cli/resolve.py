"""The text a user gives for a model -> the model, through the package's one build pipeline
(:func:`hrformer.factory.build_model`); nothing here reads weights or configs itself.

``SOURCE`` (``--model`` of ``pose`` / ``segment`` / ``classify``, the positional of ``export`` /
``info``) is

* a registered architecture, ``hrformer_s``: built untrained (the task commands refuse it without
  ``--weights``; ``export`` warns);
* ``arch.tag``, ``hrformer_s.coco_256x192``: the tag's model with its published weights;
* a directory or ``.safetensors`` file written by ``save_pretrained``, or ``local-dir:PATH``: the
  saved model, as saved;
* ``hf-hub:org/name[@revision]``: a model pushed with ``push_to_hub``;
* an original checkpoint (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` in the official or
  mmpose layout): architecture, head and semantics read from the tensors.

``--weights FILE`` with an architecture or tag: FILE is any of the files above, or a state dict in
hrformer's own layout (then the architecture comes from SOURCE and the head from the file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from torch import nn

from .errors import UserError, check_input, fail, user_errors

if TYPE_CHECKING:
    import argparse

    from ..factory import Built
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
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".safetensors")


@dataclass
class Resolved:
    """A resolved model: the model (eval mode), how it was found, whether its weights are trained."""

    model: nn.Module
    description: str
    trained: bool
    untrained_head: bool = False


def looks_like_path(text: str) -> bool:
    """Whether a SOURCE that does not exist was meant as a file (not a model name)."""
    return (os.sep in text or "/" in text or text.startswith((".", "~"))
            or Path(text).suffix.lower() in CHECKPOINT_SUFFIXES + (".json",))


def read_weights_file(path: str) -> "Checkpoint":
    """A checkpoint file or saved folder read once, in our key names, with its layout."""
    from ..weights import read_weights

    check_input(path, "checkpoint")
    with user_errors(path):
        return read_weights(path)


def _resolved(built: "Built", description: str) -> Resolved:
    return Resolved(built.model.eval(), description, built.weights is not None,
                    built.weights is not None and not built.head_trained)


def _head_kwargs(head: Any) -> dict:
    return {} if head == DEFAULT_HEAD else {"head": head}


def model_from_file(checkpoint: "Checkpoint", arch_name: Optional[str] = None, head: Any = DEFAULT_HEAD) -> Resolved:
    """The model a checkpoint (read with :func:`read_weights_file`) holds, loaded."""
    from ..factory import build_model

    with user_errors(checkpoint.source):
        built = build_model(arch_name, checkpoint=checkpoint, **_head_kwargs(head))
    what = (f"{checkpoint.source} (saved model)" if checkpoint.saved is not None
            else f"{arch_name} + {checkpoint.source}" if checkpoint.layout == "hrformer"
            else f"{checkpoint.source} ({checkpoint.layout} checkpoint)")
    return _resolved(built, what)


def load_model(
    source: str,
    weights: Optional[str] = None,
    head: Any = DEFAULT_HEAD,
    *,
    task: Optional[str] = None,
    source_flag: str = "",
) -> Resolved:
    """Resolve ``source`` (+ ``--weights``) as the module docstring says; ``task`` ("pose",
    "segmentation", "classification") refuses untrained models and models whose head is for
    another task. Raises :class:`UserError` for every mistake a user can make."""
    from ..factory import build_model, get_model_entry, split_model_name

    what = f"{source_flag} {source}".strip()
    if weights is not None:
        if os.path.exists(source) or source.startswith(SAVED_PREFIXES):
            fail(f"{what} is already a saved model or checkpoint: give it alone, without --weights")
        check_input(weights, "--weights")
        with user_errors(what):
            get_model_entry(source)  # a misspelt name fails before the file is read
        resolved = model_from_file(read_weights_file(weights), source, head)
    elif source.startswith(SAVED_PREFIXES):
        with user_errors(what):
            resolved = _resolved(build_model(source, True, **_head_kwargs(head)), source)
    elif os.path.exists(source):
        check_input(source, what)
        resolved = model_from_file(read_weights_file(source), None, head)
    elif looks_like_path(source):
        fail(f"{what}: no such file or directory (a Hub repository is named hf-hub:org/name; a registered "
             "model hrformer_t or hrformer_s.coco_256x192: see hrformer list)")
    else:
        tag = split_model_name(source)[1]
        if not tag and task is not None:
            with user_errors(what):
                get_model_entry(source)  # an unknown name: suggestions first
            kind = {"pose": "'hrformer_*coco*'", "segmentation": "'*_ocr'"}.get(task, "'*in1k*'")
            fail(f"{what}: a bare architecture has no {task} weights; name a tag (hrformer list --pretrained "
                 f"{kind}) or give --weights FILE")
        with user_errors(what):
            built = build_model(source, bool(tag), **_head_kwargs(head))
        resolved = _resolved(built, source if tag else f"{source} (untrained)")
    if task is not None:
        from ..inference import check_model

        with user_errors(what):
            check_model(resolved.model, task)
        if resolved.untrained_head:
            fail(f"{what}: its head is not trained for {task}")
    return resolved


__all__ = ["CHECKPOINT_SUFFIXES", "DEFAULT_HEAD", "Resolved", "UserError", "add_image_and_model_arguments",
           "load_model", "looks_like_path", "model_from_file", "read_weights_file"]
