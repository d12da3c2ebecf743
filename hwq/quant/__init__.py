"""hwq.quant: quantization methods (uniform, INQ, SLQ/MLQ, TQ, joint) producing the integer IR.

Entry point :func:`quantize` (``hwq quantize`` on the command line). The pieces:

* :mod:`hwq.quant.graph` -- tracing a torch model into a float graph (:class:`GraphModel`),
  the supported layers, BatchNorm folding;
* :mod:`hwq.quant.base` -- the method interface: :class:`QuantizedWeight`,
  :func:`fold_batchnorm`, :func:`weight_layers`, :func:`apply_weights`;
* :mod:`hwq.quant.methods` -- the registry of methods by name;
* :mod:`hwq.quant.fakequant` -- quantizer modules and the fake-quant torch model;
* :mod:`hwq.quant.integerize` -- folded model + quantized weights + calibration -> IR;
* :mod:`hwq.quant.uniform` -- the per-channel INT(b) baseline, PTQ and QAT.
"""

from hwq.quant.api import QuantizeResult, quantize
from hwq.quant.base import QuantizedWeight, apply_weights, fold_batchnorm, weight_layers
from hwq.quant.fakequant import FakeQuantModel
from hwq.quant.graph import GraphModel, trace
from hwq.quant.integerize import fake_quant_model, integerize
from hwq.quant.methods import METHODS, get_method

__all__ = [
    "METHODS",
    "FakeQuantModel",
    "GraphModel",
    "QuantizeResult",
    "QuantizedWeight",
    "apply_weights",
    "fake_quant_model",
    "fold_batchnorm",
    "get_method",
    "integerize",
    "quantize",
    "trace",
    "weight_layers",
]
