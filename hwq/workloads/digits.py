"""The reference workload: a small CNN on scikit-learn's bundled 8x8 handwritten digits.

The data ship with scikit-learn (1797 grayscale images, 10 classes), so nothing is downloaded.
:func:`load_data` returns a fixed, stratified split (1257 training images, 540 test images);
:func:`build_model` the network, made only of layers the accelerator runs; :func:`pretrained`
the trained fp32 reference (>= 98 % test accuracy, a few seconds of CPU), cached on disk, or
the same network trained with another seed (``pretrained(seed=s)``: same hyperparameters, the
seed drawing the initialization and the batch order), for spreads over independently
trained models.

Cache
-----
The trained weights are kept in ``<cache dir>/digits.safetensors`` (the reference, seed 0) and
``<cache dir>/digits-seed<s>.safetensors`` (any other seed ``s``). The cache directory is, in
order of precedence, the ``cache_dir`` argument, the ``HWQ_CACHE_DIR`` environment variable,
``platformdirs.user_cache_dir("hwq")``. The file's metadata holds :func:`cache_key`, a SHA-256
over the architecture, the training hyperparameters and seed, the data split and the torch
``major.minor`` version, plus a SHA-256 of the stored tensors. A missing file is trained;
a file with another key, one that cannot be read or one whose tensors do not match their digest
is retrained with a one-line :class:`RuntimeWarning`. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from hwq.workloads import cache
from hwq.workloads.cache import CACHE_ENV, cached_model, key_of, torch_version
from hwq.workloads.train import evaluate, fit

__all__ = [
    "CACHE_ENV",
    "CACHE_FILE",
    "HYPERPARAMETERS",
    "INPUT_SHAPE",
    "NUM_CLASSES",
    "REFERENCE_SEED",
    "SPLIT_RANDOM_STATE",
    "TARGET_ACCURACY",
    "TEST_SIZE",
    "DigitsData",
    "build_model",
    "cache_key",
    "describe",
    "load_data",
    "pretrained",
    "seed_cache_file",
]

#: Images in the test split (of 1797); the remaining 1257 are for training.
TEST_SIZE = 540
#: ``random_state`` of the stratified split.
SPLIT_RANDOM_STATE = 0
#: Number of classes (digits 0..9).
NUM_CLASSES = 10
#: Shape of one input image: (channels, height, width).
INPUT_SHAPE = (1, 8, 8)
#: Minimum fp32 accuracy of :func:`pretrained` on the test split, in percent.
TARGET_ACCURACY = 98.0
#: File name of the cached weights inside the cache directory.
CACHE_FILE = "digits.safetensors"

#: Training settings of the reference model (arguments of :func:`hwq.workloads.train.fit`;
#: ``seed`` also seeds the weight initialization).
HYPERPARAMETERS: MappingProxyType[str, Any] = MappingProxyType(
    {
        "epochs": 30,
        "lr": 0.05,
        "batch_size": 64,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "optimizer": "sgd",
        "schedule": "cosine",
        "seed": 0,
        "num_threads": 1,
    }
)

#: Training seed of the reference model (``HYPERPARAMETERS["seed"]``).
REFERENCE_SEED: int = HYPERPARAMETERS["seed"]

_FORMAT = "hwq.workloads.digits/1"


@dataclass(frozen=True, eq=False)
class DigitsData:
    """The digits split as tensors.

    Attributes
    ----------
    x_train, x_test : torch.Tensor
        Images, float32, shape ``(N, 1, 8, 8)``, pixel values ``k / 16`` for ``k`` in 0..16.
    y_train, y_test : torch.Tensor
        Labels, int64, shape ``(N,)``, values 0..9.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_data() -> DigitsData:
    """Load the digits data set with its fixed train/test split.

    The split is stratified by class, with ``TEST_SIZE = 540`` test images and
    ``random_state = SPLIT_RANDOM_STATE``; within each part images keep the data set's order.
    Every call returns new tensors with the same values.

    Returns
    -------
    DigitsData
        1257 training and 540 test images, scaled from 0..16 to [0, 1] by dividing by 16.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images / 16.0).to(torch.float32).unsqueeze(1)
    labels = torch.from_numpy(digits.target).to(torch.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=TEST_SIZE,
        stratify=digits.target,
        random_state=SPLIT_RANDOM_STATE,
    )
    train_idx = torch.from_numpy(np.sort(train_idx))
    test_idx = torch.from_numpy(np.sort(test_idx))
    return DigitsData(
        x_train=images[train_idx].contiguous(),
        y_train=labels[train_idx].contiguous(),
        x_test=images[test_idx].contiguous(),
        y_test=labels[test_idx].contiguous(),
    )


def build_model(*, seed: int | None = None) -> nn.Sequential:
    """The reference CNN for 8x8 digits, untrained.

    Three conv blocks (3x3 convolution without bias, zero padding 1, BatchNorm, ReLU) and a
    linear classifier::

        (1, 8, 8) -conv-> (16, 8, 8) -conv-> (32, 8, 8) -maxpool-> (32, 4, 4)
                  -conv-> (32, 4, 4) -maxpool-> (32, 2, 2) -flatten-> 128 -linear-> 10 logits

    Only layer types the accelerator runs are used: ``Conv2d``, ``BatchNorm2d``, ``ReLU``,
    ``MaxPool2d(2)``, ``Flatten``, ``Linear``. 15 418 parameters, of which 15 248 are conv and
    linear weights.

    Parameters
    ----------
    seed : int or None, default None
        Seed of the weight initialization; ``None`` draws from the global RNG. With a seed the
        global RNG state is left untouched.

    Returns
    -------
    nn.Sequential
        The model, in train mode.
    """
    if seed is None:
        return _layers()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Seed must be a non-negative integer or None, not {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _layers()


def _layers() -> nn.Sequential:
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        ]

    return nn.Sequential(
        *block(1, 16),
        *block(16, 32),
        nn.MaxPool2d(2),
        *block(32, 32),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, NUM_CLASSES),
    )


def cache_key(**overrides: Any) -> str:
    """SHA-256 (hex) identifying a trained reference model.

    Hashes the architecture (``repr`` of :func:`build_model` and its tensor shapes), the
    hyperparameters, the data split (its parameters and a digest of the tensors) and the torch
    ``major.minor`` version.

    Parameters
    ----------
    **overrides
        Hyperparameters replacing those of :data:`HYPERPARAMETERS` (keys must be among them).

    Returns
    -------
    str
        64 hexadecimal digits.

    Raises
    ------
    ValueError
        If an override names an unknown hyperparameter.
    """
    unknown = sorted(set(overrides) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(
            f"Unknown hyperparameter {unknown[0]!r}; allowed: {', '.join(HYPERPARAMETERS)}"
        )
    model = build_model(seed=0)
    data = load_data()
    split = hashlib.sha256()
    for tensor in (data.x_train, data.y_train, data.x_test, data.y_test):
        split.update(tensor.numpy().tobytes())
    description = {
        "format": _FORMAT,
        "architecture": repr(model),
        "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
        "hyperparameters": {**HYPERPARAMETERS, **overrides},
        "split": {
            "test_size": TEST_SIZE,
            "random_state": SPLIT_RANDOM_STATE,
            "stratified": True,
            "sha256": split.hexdigest(),
        },
        "torch": torch_version(),
    }
    return key_of(description)


def describe() -> dict[str, Any]:
    """The reference model's settings, for reports.

    Returns
    -------
    dict
        The :data:`HYPERPARAMETERS` plus ``test_size``, ``split_random_state``,
        ``target_accuracy`` (percent) and ``cache_key``.
    """
    return {
        **HYPERPARAMETERS,
        "test_size": TEST_SIZE,
        "split_random_state": SPLIT_RANDOM_STATE,
        "target_accuracy": TARGET_ACCURACY,
        "cache_key": cache_key(),
    }


def seed_cache_file(seed: int) -> str:
    """File name, inside the cache directory, of the model trained with ``seed``.

    Parameters
    ----------
    seed : int
        Training seed, >= 0.

    Returns
    -------
    str
        :data:`CACHE_FILE` for :data:`REFERENCE_SEED`, else ``digits-seed<seed>.safetensors``.

    Raises
    ------
    ValueError
        If ``seed`` is not a non-negative integer.

    Examples
    --------
    >>> seed_cache_file(0)
    'digits.safetensors'
    >>> seed_cache_file(7)
    'digits-seed7.safetensors'
    """
    _check_seed(seed)
    return CACHE_FILE if seed == REFERENCE_SEED else f"digits-seed{seed}.safetensors"


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Training seed must be a non-negative integer, not {seed!r}")
    return seed


def pretrained(
    *,
    seed: int = REFERENCE_SEED,
    cache_dir: str | os.PathLike[str] | None = None,
    retrain: bool = False,
    progress: bool = True,
) -> nn.Module:
    """The trained fp32 reference model, from the cache or trained now (a few seconds).

    Parameters
    ----------
    seed : int, default REFERENCE_SEED (0)
        Training seed (weight initialization and batch order); the other
        :data:`HYPERPARAMETERS` stay. The default is the reference model; another seed gives
        an independently trained model of the same recipe, cached in its own file
        (:func:`seed_cache_file`) under :func:`cache_key` ``(seed=seed)``.
    cache_dir : path or None, default None
        Directory of the cache file; ``None`` uses ``$HWQ_CACHE_DIR`` if set, else
        ``platformdirs.user_cache_dir("hwq")``. Created if missing.
    retrain : bool, default False
        Train even if a valid cache file exists, and overwrite it.
    progress : bool, default True
        Show a progress bar on stderr while training.

    Returns
    -------
    nn.Module
        The model of :func:`build_model` with trained weights, in eval mode.

    Raises
    ------
    ValueError
        If ``seed`` is not a non-negative integer, or ``cache_dir`` is a file.

    Warns
    -----
    RuntimeWarning
        When a cache file is unreadable, corrupt or made with other settings (it is then
        retrained), or when a fresh training misses :data:`TARGET_ACCURACY`.
    """
    name = seed_cache_file(seed)  # validates the seed before the directory is created
    which = "reference model" if seed == REFERENCE_SEED else f"model of seed {seed}"
    return cached_model(
        cache.cache_dir(cache_dir) / name, cache_key(seed=seed),
        build=lambda: build_model(seed=0), train=lambda: _train(seed=seed, progress=progress),
        label="Digits", which=which, target=TARGET_ACCURACY, fmt=_FORMAT,
        metadata={"hyperparameters": json.dumps({**HYPERPARAMETERS, "seed": seed},
                                                 sort_keys=True)},
        retrain=retrain)


def _train(*, seed: int, progress: bool) -> tuple[nn.Sequential, float]:
    hp = {**HYPERPARAMETERS, "seed": seed}
    data = load_data()
    model = build_model(seed=hp["seed"])
    desc = "digits" if seed == REFERENCE_SEED else f"digits seed {seed}"
    fit(model, data.x_train, data.y_train, progress=progress, desc=desc, **hp)
    return model, evaluate(model, data.x_test, data.y_test)


#: The state-dict digest of the cache (:func:`hwq.workloads.cache.digest`).
_digest = cache.digest
