"""Your own model and data: ``--model path/to/file.py:function`` and ``--data file.npz``.

A model spec is a built-in workload name (:data:`hwq.workloads.WORKLOADS`), a
``torch.export`` file ``FILE.pt2`` (:mod:`hwq.workloads.exported`; its data from ``--data``) or
``path/to/file.py:function``: the file is imported as a module (its own folder first on the
import path, so it may import its neighbours) and ``function()`` is called with no
arguments. It returns an ``nn.Module`` (trained, in eval mode), or ``(module, data)`` where
``data`` is anything :func:`as_data` takes.

Data (``--data``) is an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``
(images float, labels integer class indices), or one with ``x`` and ``y`` only, split 80/20
in order; ``--inputs`` of ``hwq sim``/``hwq flow`` takes such a file or an ``.npy`` array of
images. Shapes are checked once, against the model, with one message.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ArrayData", "as_data", "load_arrays", "load_model"]


@dataclass(frozen=True, eq=False)
class ArrayData:
    """Training and test images and labels as tensors (float32 images, int64 labels)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _images(a: object, what: str) -> torch.Tensor:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu" or arr.ndim < 2 or arr.shape[0] == 0:
        raise ValueError(f"{what} must be a numeric array of shape (N, ...) with N >= 1, not "
                         f"dtype {arr.dtype} shape {arr.shape}")
    if not np.isfinite(arr.astype(np.float64)).all():
        raise ValueError(f"{what} must be finite; it holds NaN or infinity")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _labels(a: object, n: int, what: str) -> torch.Tensor:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu" or arr.shape != (n,) or (n and arr.min() < 0):
        raise ValueError(f"{what} must be {n} non-negative integer class indices (shape ({n},)), "
                         f"not dtype {arr.dtype} shape {arr.shape}")
    return torch.from_numpy(arr.astype(np.int64))


def as_data(d: object, what: str = "data") -> ArrayData:
    """Training and test tensors from an object or mapping with ``x_train``, ``y_train``,
    ``x_test``, ``y_test``, or a mapping with ``x`` and ``y`` (split 80/20, in order)."""
    get = (lambda k: d[k]) if isinstance(d, dict | np.lib.npyio.NpzFile) else \
        (lambda k: getattr(d, k))
    keys = set(d.keys()) if isinstance(d, dict | np.lib.npyio.NpzFile) else \
        {k for k in ("x_train", "y_train", "x_test", "y_test", "x", "y") if hasattr(d, k)}
    if {"x_train", "y_train", "x_test", "y_test"} <= keys:
        x_train, x_test = _images(get("x_train"), f"{what} x_train"), \
            _images(get("x_test"), f"{what} x_test")
        y_train = _labels(get("y_train"), x_train.shape[0], f"{what} y_train")
        y_test = _labels(get("y_test"), x_test.shape[0], f"{what} y_test")
    elif {"x", "y"} <= keys:
        x = _images(get("x"), f"{what} x")
        y = _labels(get("y"), x.shape[0], f"{what} y")
        if x.shape[0] < 2:
            raise ValueError(f"{what} needs at least 2 samples to split, not {x.shape[0]}")
        cut = max(1, int(round(0.8 * x.shape[0])))
        x_train, y_train, x_test, y_test = x[:cut], y[:cut], x[cut:], y[cut:]
    else:
        raise ValueError(f"{what} must hold x_train, y_train, x_test, y_test (or x and y), "
                         f"not {sorted(keys)}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{what}: training images {tuple(x_train.shape[1:])} and test images "
                         f"{tuple(x_test.shape[1:])} differ in shape")
    return ArrayData(x_train, y_train, x_test, y_test)


def load_arrays(path: str | os.PathLike[str]) -> ArrayData | torch.Tensor:
    """An ``.npz`` data file (:class:`ArrayData`) or an ``.npy`` array of images."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"No data file at {p}")
    try:
        if p.suffix == ".npy":
            return _images(np.load(p, allow_pickle=False), f"{p}")
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                return as_data(f, str(p))
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{p} is not a readable NumPy file ({exc})") from None
    raise ValueError(f"Data file {p} must be .npz (x_train, y_train, x_test, y_test) or .npy "
                     "(images)")


def load_model(spec: str) -> tuple[nn.Module, ArrayData | None]:
    """The model of a ``path/to/file.py:function`` spec and the data it returned, if any;
    or the model of a ``torch.export`` file ``FILE.pt2`` (:mod:`hwq.workloads.exported`).

    Raises
    ------
    ValueError
        a spec of another form, a missing file or function, an import that fails, or a
        function that returns something else than a module (or a module and its data).
    """
    if str(spec).endswith(".pt2"):
        from hwq.workloads.exported import load_exported

        return load_exported(spec), None
    path_text, sep, name = str(spec).rpartition(":")
    if not sep or not path_text.endswith(".py") or not name.isidentifier():
        raise ValueError(f"--model must be a workload name, path/to/file.py:function or a "
                         f"torch.export FILE.pt2, not {spec!r}")
    path = Path(path_text)
    if not path.is_file():
        raise ValueError(f"No model file at {path}")
    module_name = f"hwq_user_model_{abs(hash(path.resolve()))}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        loader.loader.exec_module(module)
    except Exception as exc:  # the user's code may raise anything
        raise ValueError(f"Importing {path} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.pop(0)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"{path} has no function {name!r}")
    try:
        out: Any = fn()
    except Exception as exc:
        raise ValueError(f"{path}:{name}() failed: {type(exc).__name__}: {exc}") from None
    data = None
    if isinstance(out, tuple) and len(out) == 2:
        out, data = out
        data = as_data(data, f"the data of {path}:{name}()")
    if not isinstance(out, nn.Module):
        raise ValueError(f"{path}:{name}() must return an nn.Module (or a module and its "
                         f"data), not {type(out).__name__}")
    return out.eval(), data
