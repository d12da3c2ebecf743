import doctest
import importlib

import pytest

MODULES = ["hwq.golden._checks", "hwq.golden.formats", "hwq.golden.requant",
           "hwq.golden.bitserial", "hwq.golden.ops", "hwq.golden.window", "hwq.golden.eltwise",
           "hwq.golden.cycles", "hwq.hardware", "hwq.layout.regmap"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
