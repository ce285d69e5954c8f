"""Reading checkpoint files safely: ``.safetensors``, and ``.pth``/``.pt``/``.bin``/``.ckpt`` through
``torch.load(weights_only=True)`` only, then finding the state dict inside whatever wraps it."""

from __future__ import annotations

import os
import pickle
import re
from typing import Any, Dict, List, Mapping, Union

import torch

from ..errors import CheckpointLayoutError, CheckpointReadError

StateDict = Dict[str, torch.Tensor]
PathLike = Union[str, "os.PathLike[str]"]

# Looked for in this order: an EMA copy wins over the raw weights, as in timm's ``use_ema=True``.
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "module", "net")
_STRIP_PREFIXES = ("module.", "_orig_mod.", "model.")


def _numpy_data_globals() -> List[Any]:
    """numpy scalars, arrays and dtypes, which mmcv/mmengine store in checkpoint metadata (e.g. a
    best score). Rebuilding them runs no user code, so ``weights_only=True`` may accept them."""
    if torch.__version__ < "2.6":  # (callable, legacy name) entries need torch 2.6
        return []
    try:
        import numpy as np
    except ImportError:
        return []
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    found: List[Any] = [multiarray.scalar, multiarray._reconstruct, np.ndarray, np.dtype]
    if hasattr(np, "dtypes"):  # numpy >= 1.25 pickles dtypes by class
        found += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    if hasattr(np, "_core"):  # numpy 2 reading files pickled by numpy 1
        found += [(multiarray.scalar, "numpy.core.multiarray.scalar"),
                  (multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]
    return found


def _torch_load(path: str) -> Any:
    safe_globals = _numpy_data_globals()
    if safe_globals:
        with torch.serialization.safe_globals(safe_globals):
            return torch.load(path, map_location="cpu", weights_only=True)
    return torch.load(path, map_location="cpu", weights_only=True)


_DATA_MODULES = ("torch", "collections", "numpy", "_codecs")


def _code_globals(path: str) -> List[str]:
    """The callables a plain (non-zip) pickle file names outside torch / collections / numpy: what
    unpickling it would import and may run. The opcodes are only read, never executed."""
    import pickletools
    import zipfile

    if zipfile.is_zipfile(path):
        return []
    found, strings = set(), []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(arg)
                elif op.name == "GLOBAL":
                    found.add(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.add(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # not a pickle, or damaged after the part that names callables
        pass
    return sorted(g for g in found if not g.startswith(tuple(m + "." for m in _DATA_MODULES)))


def _refused(path: str, needed: List[str]) -> CheckpointReadError:
    return CheckpointReadError(
        f"{path}: refused as unsafe, unpickling it would run Python code ({', '.join(needed)}). "
        "hrformer reads .pth files with torch.load(weights_only=True) only, which runs no code from the "
        "file. Ask for the weights as .safetensors, or re-save only the state dict's tensors where you can "
        "vouch for the file's origin."
    )


def read_checkpoint(path: PathLike) -> Mapping[str, Any]:
    """The object stored in a checkpoint file, read without executing code from it.

    Raises :class:`FileNotFoundError`, or :class:`CheckpointReadError` for a corrupt or truncated
    file and for a pickle that needs anything beyond tensors and plain data.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointReadError(f"{path}: corrupt or truncated safetensors file ({e})") from e
    # Causes are dropped here on purpose: torch's unpickling errors end in advice to load with
    # weights_only=False, which would run the file's code; our message says what the file needs instead.
    try:
        return _torch_load(path)
    except pickle.UnpicklingError as e:
        needed = sorted(set(re.findall(r"GLOBAL (\S+)", str(e)))) or _code_globals(path)
        if needed:
            raise _refused(path, needed) from None
        raise CheckpointReadError(f"{path}: corrupt or truncated checkpoint ({_first_line(e)})") from None
    except Exception as e:
        needed = _code_globals(path)
        if needed:
            raise _refused(path, needed) from None
        raise CheckpointReadError(
            f"{path}: not a readable PyTorch checkpoint, corrupt or truncated ({type(e).__name__}: {e})"
        ) from e


def _first_line(error: Exception) -> str:
    """torch's own first sentence, without its advice to turn ``weights_only`` off."""
    return str(error).split(". In PyTorch 2.6")[0].splitlines()[0]


def unwrap_state_dict(obj: Mapping[str, Any]) -> StateDict:
    """Find the tensors in a checkpoint: ``state_dict``/``model``/EMA wrappers (EMA preferred),
    ``module.`` / ``_orig_mod.`` / ``model.`` prefixes; non-tensor entries are ignored."""
    seen = 0
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()) and seen < 4:
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        else:
            break
        seen += 1
    if not isinstance(obj, Mapping):
        raise CheckpointLayoutError(f"expected a state dict (mapping of tensors), got {type(obj).__name__}")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointLayoutError("the checkpoint holds no tensors")
    for prefix in _STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    for key, tensor in sd.items():
        _check_storage(key, tensor)
    return sd


def _check_storage(key: str, tensor: torch.Tensor) -> None:
    """Refuse a tensor that claims more elements than its file stores (zero or overlapping strides):
    a few bytes on disk that any copy would expand to gigabytes. Trained weights never look so."""
    if tensor.numel() <= 1 or tensor.layout != torch.strided:
        return
    span = 1 + sum((size - 1) * abs(stride) for size, stride in zip(tensor.shape, tensor.stride()))
    if span < tensor.numel():
        raise CheckpointReadError(
            f"{key}: shape {tuple(tensor.shape)} ({tensor.numel():,} elements) stored in {span:,} (zero or "
            "overlapping strides); copying it would allocate "
            f"{tensor.numel() * tensor.element_size() / 2**30:.1f} GiB. Not a saved weight: refused"
        )

