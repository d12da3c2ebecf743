"""Fixtures shared by the quantization tests: the digits data and the trained reference model.

The reference model is trained at most once per test session (a few seconds), into a
session-private cache directory, never into the user's cache.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from torch import nn

from hwq.workloads import digits


@pytest.fixture(scope="session")
def digits_data() -> digits.DigitsData:
    """The fixed digits split (shared; do not modify the tensors in place)."""
    return digits.load_data()


@pytest.fixture(scope="session")
def digits_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-private cache directory holding the trained reference model."""
    return tmp_path_factory.mktemp("hwq-cache")


@pytest.fixture(scope="session")
def digits_reference(digits_cache_dir: Path) -> nn.Module:
    """The trained reference model, shared by the session: read-only, use ``digits_model``."""
    return digits.pretrained(cache_dir=digits_cache_dir, progress=False)


@pytest.fixture
def digits_model(digits_reference: nn.Module) -> nn.Module:
    """A private copy of the trained reference model (eval mode) that a test may modify."""
    return copy.deepcopy(digits_reference)
