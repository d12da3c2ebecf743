"""The digits fixtures of tests/quant for the QONNX tests."""

from tests.quant.conftest import digits_cache_dir, digits_data, digits_reference  # noqa: F401
