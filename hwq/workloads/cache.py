"""The cache of trained reference models and prepared data sets.

A trained model is one safetensors file in the cache directory whose metadata holds a key (a
SHA-256 over everything that determines the weights: architecture, hyperparameters, data
split, torch version) and a SHA-256 of the stored tensors. :func:`cached_model` returns the
cached weights when the key and digest match, and trains (then stores) otherwise: a missing
file silently, a stale, unreadable or corrupt one with a one-line :class:`RuntimeWarning`.
Files are written atomically, with the umask's permissions.

The cache directory is, in order of precedence, the ``cache_dir`` argument, the
``HWQ_CACHE_DIR`` environment variable, ``platformdirs.user_cache_dir("hwq")``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from hwq.serialize import atomic_write

__all__ = ["CACHE_ENV", "cache_dir", "cached_model", "digest", "key_of"]

#: Environment variable that overrides the cache directory.
CACHE_ENV = "HWQ_CACHE_DIR"


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory (created if missing).

    Raises
    ------
    ValueError
        ``path`` (or ``$HWQ_CACHE_DIR``) is a file.
    """
    if path is None:
        path = os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("hwq")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"Cache directory must be a directory, not the file {str(p)!r}")
    p.mkdir(parents=True, exist_ok=True)
    return p


def key_of(description: dict[str, Any]) -> str:
    """SHA-256 (hex) of a JSON description (sorted keys, compact)."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def torch_version() -> str:
    """``major.minor`` of torch (weights trained by other patch releases are reused)."""
    return ".".join(torch.__version__.split("+")[0].split(".")[:2])


def digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


class _StaleCache(Exception):
    """The cache file's key differs from the expected one."""


def cached_model(path: Path, key: str, *, build: Callable[[], torch.nn.Module],
                 train: Callable[[], tuple[torch.nn.Module, float]], label: str, which: str,
                 target: float, fmt: str, metadata: dict[str, str], retrain: bool = False
                 ) -> torch.nn.Module:
    """The trained model cached at ``path`` under ``key``, or trained now and stored.

    Parameters
    ----------
    build : callable
        an untrained model of the architecture (the cached weights are loaded into it).
    train : callable
        trains a model: ``(model, test accuracy in percent)``.
    label, which : str
        how warnings name the cache (``"Digits"``) and the model (``"reference model"``).
    target : float
        test accuracy (percent) under which a fresh training warns.
    fmt : str
        the cache format name stored in the metadata.
    metadata : dict of str
        further metadata (hyperparameters, ...).

    Returns
    -------
    nn.Module
        in eval mode.
    """
    if not retrain and path.exists():
        try:
            return _load(path, key, build)
        except _StaleCache as exc:
            warnings.warn(f"{label} cache {path} was made with other settings ({exc}); "
                          "retraining", RuntimeWarning, stacklevel=3)
        except (OSError, SafetensorError, RuntimeError, ValueError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            warnings.warn(f"{label} cache {path} is unreadable ({type(exc).__name__}: "
                          f"{reason}); retraining", RuntimeWarning, stacklevel=3)
    model, accuracy = train()
    if accuracy < target:
        warnings.warn(f"{label} {which} reached {accuracy:.2f} % test accuracy, below the "
                      f"{target} % target", RuntimeWarning, stacklevel=3)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": fmt, "key": key, "sha256": digest(state),
            "test_accuracy": f"{accuracy:.4f}", "torch": torch.__version__, **metadata}
    atomic_write(path, save(state, metadata=meta))
    return model.eval()


def _load(path: Path, key: str, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    found = metadata.get("key")
    if found != key:
        raise _StaleCache(f"key {str(found)[:12]}..., expected {key[:12]}...")
    state = load_file(path)
    if metadata.get("sha256") != digest(state):
        raise ValueError("tensor digest mismatch")
    model = build()
    model.load_state_dict(state, strict=True)
    return model.eval()
