"""QONNX in and out: read a QONNX graph into a :class:`~hwq.ir.QuantizedNetwork`, write one.

* :func:`import_qonnx` (:mod:`hwq.qonnx.importer`): a QONNX graph as Brevitas exports it
  (``Quant`` nodes on weights and activations; Conv, Gemm/MatMul, Relu, MaxPool, Add,
  GlobalAveragePool/AveragePool/ReduceMean, Flatten/Reshape) -> an integer network; which
  quantizers map exactly and which only approximately is stated there.
* :func:`export_qonnx` (:mod:`hwq.qonnx.exporter`): an integer network -> a QONNX graph
  whose execution by ``qonnx.core.onnx_exec.execute_onnx`` equals :func:`hwq.golden.run`
  bit for bit.

Both need the ``onnx`` extra (``pip install "hwq[onnx]"``: onnx, onnxruntime, qonnx);
importing :mod:`hwq` or this package does not.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from hwq.errors import ToolchainError

if TYPE_CHECKING:
    from hwq.qonnx.exporter import export_qonnx
    from hwq.qonnx.importer import ImportResult, import_qonnx

__all__ = ["ImportResult", "MissingExtra", "export_qonnx", "import_qonnx", "require"]

#: The extra that installs what this package needs.
EXTRA = "onnx"


class MissingExtra(ToolchainError, ImportError):
    """A package of the ``onnx`` extra is not installed."""


def require(module: str) -> ModuleType:
    """Import ``module`` (``onnx``, ``onnxruntime``, ``qonnx...``) or raise
    :class:`MissingExtra` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(f"QONNX import/export needs the '{EXTRA}' extra: "
                           f"pip install \"hwq[{EXTRA}]\" (cannot import {module}: {exc})"
                           ) from None


def __getattr__(name: str) -> Any:  # lazy: `import hwq.qonnx` must not import onnx
    if name in ("import_qonnx", "ImportResult"):
        return getattr(importlib.import_module("hwq.qonnx.importer"), name)
    if name == "export_qonnx":
        return importlib.import_module("hwq.qonnx.exporter").export_qonnx
    raise AttributeError(f"module 'hwq.qonnx' has no attribute {name!r}")
