"""Getting and publishing weight files: the Hugging Face Hub, the original release URLs, and our own
format (``model.safetensors`` + ``config.json``). Nothing here touches the network at import, and
``huggingface_hub`` is imported only when a function needs it."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from ..atomic import atomic_paths
from ..errors import CheckpointLayoutError, CheckpointReadError, ConfigError, InputError, WeightsUnavailableError
from .files import PathLike

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})(?:_\d+)?\.[A-Za-z0-9]+$")


def is_offline() -> bool:
    """``HF_HUB_OFFLINE=1``: no network access, for the Hub and the original URLs alike."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


_REACHABLE: Dict[str, Tuple[bool, float]] = {}
PROBE_TIMEOUT_S = 3.0


def hub_reachable(endpoint: Optional[str] = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds (name lookup
    included), remembered for a minute. Without a network ``hf_hub_download`` retries for ~25 s
    before it falls back to the cache; one probe instead fails in well under a second. With a
    proxy configured the Hub is assumed reachable (the proxy decides)."""
    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = endpoint or constants.ENDPOINT
    known = _REACHABLE.get(endpoint)
    if known is not None and time.monotonic() - known[1] < 60:
        return known[0]
    url = urllib.parse.urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    result: List[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    probe = threading.Thread(target=connect, daemon=True)  # a thread bounds the name lookup too
    probe.start()
    probe.join(timeout)
    reachable = bool(result and result[0])
    _REACHABLE[endpoint] = (reachable, time.monotonic())
    return reachable


def split_hub_id(hub_id: str) -> Tuple[str, Optional[str]]:
    """``"hf-hub:org/name@rev"`` (prefix and revision optional) -> ``("org/name", "rev")``."""
    if hub_id.startswith(HF_HUB_PREFIX):
        hub_id = hub_id[len(HF_HUB_PREFIX):]
    repo_id, _, revision = hub_id.partition("@")
    return repo_id, revision or None


# --------------------------------------------------------------------------- downloads
def download_hub_file(
    repo_id: str,
    filename: str = WEIGHTS_NAME,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
) -> str:
    """Local path of ``filename`` from a Hub repository (cached, or downloaded with ``hf_hub_download``).

    Raises :class:`WeightsUnavailableError` saying whether the machine is offline, the repository,
    revision or file does not exist, or the download failed.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    local_only = not is_offline() and not hub_reachable()
    try:
        return hf_hub_download(repo_id, filename, revision=revision, library_name="hrformer",
                               cache_dir=None if cache_dir is None else os.fspath(cache_dir),
                               local_files_only=local_only)
    except LocalEntryNotFoundError:  # before EntryNotFoundError, its base class
        reason = ("not in the local cache, and offline mode is on (HF_HUB_OFFLINE=1)" if is_offline() else
                  "not in the local cache, and the Hub could not be reached (is this machine offline?)")
    except RevisionNotFoundError:
        reason = f"the repository has no revision {revision!r}"
    except RepositoryNotFoundError:
        reason = "the repository does not exist on the Hub (not published yet, private, or misspelled)"
    except EntryNotFoundError:
        reason = f"the repository has no file {filename}"
    except (HfHubHTTPError, OSError) as e:
        reason = f"download failed ({type(e).__name__}: {e})"
    at = f"@{revision}" if revision else ""
    raise WeightsUnavailableError(f"Hugging Face Hub {repo_id}{at}, file {filename}: {reason}")


def hash_prefix_in_name(filename: str) -> Optional[str]:
    """The sha256 prefix a release file name carries: ``name-<sha256[:8+]>[_date].pth`` (torch.hub,
    OpenMMLab), else ``None``."""
    m = _HASH_IN_NAME.search(filename)
    return m[1] if m else None


def file_sha256(path: PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_url(url: str, cache_dir: Optional[PathLike] = None, progress: bool = True) -> str:
    """Local path of an original checkpoint, downloaded once into ``cache_dir`` (default
    ``<torch hub dir>/checkpoints``) with a progress bar and, when the file name carries a hash
    prefix, a sha256 check. A failed or mismatching download leaves nothing behind."""
    filename = os.path.basename(urllib.parse.urlparse(url).path)
    directory = os.fspath(cache_dir) if cache_dir is not None else os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(directory, filename)
    expected = hash_prefix_in_name(filename)
    if os.path.isfile(path):
        if expected and not file_sha256(path).startswith(expected):
            raise WeightsUnavailableError(
                f"{path}: the cached download does not match the sha256 its name promises ({expected}...): damaged "
                "or replaced. Delete it to download it again."
            )
        return path
    if is_offline():
        raise WeightsUnavailableError(f"{url}: not downloaded yet ({path}), and offline mode is on (HF_HUB_OFFLINE=1)")
    os.makedirs(directory, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, path, hash_prefix=expected, progress=progress)
    except RuntimeError as e:
        if "invalid hash value" not in str(e):
            raise
        raise WeightsUnavailableError(
            f"{url}: sha256 mismatch, the file name promises {expected}... ({e}); the download was discarded"
        ) from e
    except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
        raise WeightsUnavailableError(f"{url}: download failed ({type(e).__name__}: {e})") from e
    return path


# --------------------------------------------------------------------------- our format
# Each weights file carries its own model config in its safetensors metadata, and config.json (the
# Hub's convention, what users edit) names the weights file it describes: two saves into one folder
# can never share, and silently swap, a config.
CONFIG_METADATA_KEY = "hrformer_config"
_NO_FILE = object()


def saved_paths(path: PathLike) -> Tuple[Path, Path]:
    """(weights, config) of a saved model: ``dir/model.safetensors`` + ``dir/config.json``, or a
    ``*.safetensors`` file with the ``config.json`` beside it."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return path, path.parent / CONFIG_NAME
    return path / WEIGHTS_NAME, path / CONFIG_NAME


def write_saved(path: PathLike, tensors: Dict[str, torch.Tensor], config: Dict[str, Any]
                ) -> Tuple[Path, Optional[Path]]:
    """Write the weights (``config`` in their metadata) and ``config.json`` (see :func:`saved_paths`),
    atomically as a unit; returns both paths. A ``*.safetensors`` file saved beside a ``config.json``
    that describes another weights file leaves that file alone (the config path returned is None)."""
    from safetensors.torch import save_file

    if not os.fspath(path).strip():
        raise InputError("save_pretrained: empty path; give a directory (or a .safetensors file) to write into")
    weights, config_path = saved_paths(path)
    if weights.is_dir() or config_path.parent.exists() and not config_path.parent.is_dir():
        raise InputError(f"save_pretrained({os.fspath(path)!r}): {weights} is a directory, or its folder is a file")
    weights.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**config, "weights_file": weights.name}, indent=2) + "\n"
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    files: Dict[Path, Callable[[str], None]] = {
        weights: lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", CONFIG_METADATA_KEY: text})}
    owner = _config_owner(config_path)
    if weights.name == WEIGHTS_NAME or owner in (_NO_FILE, weights.name):
        files[config_path] = lambda tmp: Path(tmp).write_text(text)
    with atomic_paths(*files) as temps:
        for tmp, write in zip(temps, files.values()):
            write(tmp)
    return weights, (config_path if config_path in files else None)


def _config_owner(config_path: Path) -> Any:
    """The weights file name an existing ``config.json`` says it describes: ``None`` when it does not
    say (written before configs named their weights), ``""`` when unreadable, ``_NO_FILE`` when absent."""
    if not config_path.is_file():
        return _NO_FILE
    try:
        data = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return ""
    return data.get("weights_file") if isinstance(data, dict) else ""


def embedded_config(weights: PathLike) -> Optional[Dict[str, Any]]:
    """The model config a ``.safetensors`` file written by :func:`write_saved` carries, else None."""
    if Path(weights).suffix != ".safetensors" or not Path(weights).is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(weights), framework="pt") as f:
            text = (f.metadata() or {}).get(CONFIG_METADATA_KEY)
    except Exception as e:  # safetensors raises its own error types for damaged headers
        raise CheckpointReadError(f"{weights}: corrupt or truncated safetensors file ({e})") from e
    return None if text is None else parse_config(text, f"{weights} (its metadata)")


def saved_config(weights: PathLike) -> Optional[Dict[str, Any]]:
    """The config of saved weights: the ``config.json`` beside them when it describes this file (it
    names it, or names none), else the one the file carries; None for weights that are no saved
    model (a bare state dict, an original checkpoint)."""
    weights = Path(weights)
    config_path = weights.parent / CONFIG_NAME
    owner = _config_owner(config_path) if weights.suffix == ".safetensors" else _NO_FILE
    if owner is None or owner == weights.name:
        try:
            return read_config(config_path)
        except ConfigError:
            if owner == weights.name:
                raise
            # someone else's config.json (e.g. a transformers model): the file's own, if any
    found = embedded_config(weights)
    if found is None and owner not in (_NO_FILE, None, ""):
        raise CheckpointLayoutError(
            f"{weights}: carries no config, and the {config_path} beside it describes {owner}, not this file")
    return found


def parse_config(text: str, source: str) -> Dict[str, Any]:
    """A saved model config (``config.json`` text), checked for the entries a model needs; ``source``
    (where it was read, for messages) is added under the key ``"source"``."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{source}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or not {"config", "model_kwargs"} <= set(data):
        raise ConfigError(f"{source}: not an hrformer config.json (needs 'config' and 'model_kwargs')")
    for key in ("config", "model_kwargs"):
        if not isinstance(data[key], dict):
            raise ConfigError(f"{source}: {key!r} must be a mapping, got {type(data[key]).__name__}")
    if data.get("pretrained_cfg") is not None and not isinstance(data["pretrained_cfg"], dict):
        raise ConfigError(f"{source}: 'pretrained_cfg' must be a mapping or null")
    return {**data, "source": source}


def read_config(path: PathLike) -> Dict[str, Any]:
    """A ``config.json`` written by :func:`save_pretrained`."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise WeightsUnavailableError(f"{path}: cannot read the model config ({e})") from e
    return parse_config(text, os.fspath(path))


def looks_local(text: str) -> bool:
    """Whether ``text`` can only mean a local path: it starts with ``.``, ``/`` or ``~``, has a file
    suffix or a backslash, or is not of the Hub's ``org/name`` form."""
    return (
        text.startswith((".", "/", "~")) or "\\" in text or text.count("/") != 1
        or Path(text).suffix in (".safetensors", ".json") + TORCH_SUFFIXES
    )


def resolve_saved(
    source: PathLike, revision: Optional[str] = None, cache_dir: Optional[PathLike] = None, weights: bool = True
) -> Tuple[Optional[str], Dict[str, Any]]:
    """(weights path, or ``None`` when ``weights=False``; the saved config) of a model written by
    :func:`write_saved`: a local directory or ``.safetensors`` file (``local-dir:`` prefix optional),
    else a Hub repository (``hf-hub:org/name[@revision]``, prefix optional)."""
    text = os.fspath(source)
    if not text.startswith((LOCAL_DIR_PREFIX, HF_HUB_PREFIX)) and not os.path.exists(text) and looks_local(text):
        raise FileNotFoundError(
            f"{text}: no such file or directory (a Hub repository is named 'org/name' or 'hf-hub:org/name')"
        )
    if text.startswith(LOCAL_DIR_PREFIX) or os.path.exists(text):
        local = Path(text[len(LOCAL_DIR_PREFIX):] if text.startswith(LOCAL_DIR_PREFIX) else text)
        local_weights, local_config = saved_paths(local)
        if weights or local_weights.is_file():
            if not local_weights.is_file():
                raise FileNotFoundError(f"{local_weights} not found: {local} is not a model saved by "
                                        "hrformer.save_pretrained")
            config = saved_config(local_weights)
        else:
            config = read_config(local_config) if local_config.is_file() else None
        if config is None:
            raise FileNotFoundError(f"{local_config} not found, and {local_weights.name} carries no config: {local} "
                                    "is not a model saved by hrformer.save_pretrained")
        return (str(local_weights) if weights else None), config
    repo_id, pinned = split_hub_id(text)
    if pinned and revision and pinned != revision:
        raise InputError(f"two revisions given for {repo_id}: {pinned!r} in the name and revision={revision!r}")
    revision = pinned or revision
    try:
        weights_path = download_hub_file(repo_id, WEIGHTS_NAME, revision, cache_dir) if weights else None
        config = embedded_config(weights_path) if weights_path else None
        if config is None:
            config = read_config(download_hub_file(repo_id, CONFIG_NAME, revision, cache_dir))
    except WeightsUnavailableError as e:
        raise WeightsUnavailableError(
            f"{e}. To load a model saved with hrformer.save_pretrained from disk instead, pass its "
            "directory: hrformer.from_pretrained('path/to/dir') or create_model('local-dir:path/to/dir')."
        ) from e
    return weights_path, config


def _model_card(repo_id: str, config: Dict[str, Any], task: str) -> str:
    cfg = config.get("pretrained_cfg") or {}
    lines = ["---", f"license: {cfg.get('license', 'mit')}", "library_name: hrformer",
             f"pipeline_tag: {task}", f"tags: [hrformer, {task}, vision]", "---", "",
             f"# {repo_id}", "", "HRFormer (High-Resolution Transformer, NeurIPS 2021) weights for the "
             "[`hrformer`](https://pypi.org/project/hrformer/) package.", ""]
    if cfg:
        lines += [f"- weights: `{cfg['architecture']}.{cfg['tag']}`; {cfg.get('notes', '')}".rstrip("; "),
                  f"- original: {cfg.get('url') or cfg.get('origin_url') or '-'}",
                  f"- reported: {cfg.get('metrics') or '-'}", f"- input size: {cfg.get('input_size')}", ""]
    lines += ["```python", "import hrformer", f'model = hrformer.create_model("hf-hub:{repo_id}", pretrained=True)',
              "```", ""]
    return "\n".join(lines)


def upload_saved(
    repo_id: str,
    tensors: Dict[str, torch.Tensor],
    config: Dict[str, Any],
    pipeline_tag: str = "image-feature-extraction",
    revision: Optional[str] = None,
    private: Optional[bool] = None,
    token: Optional[Union[str, bool]] = None,
    commit_message: str = "Upload hrformer weights",
) -> Any:
    """Publish the files :func:`write_saved` writes (plus a model card) to a Hub repository, creating
    it if needed. Returns the commit info of ``HfApi.upload_folder``."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_saved(tmp, tensors, config)
        (Path(tmp) / "README.md").write_text(_model_card(repo_id, config, pipeline_tag))
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision, commit_message=commit_message)
