"""The integer IR: a :class:`QuantizedNetwork` is a graph of integer ops in hardware formats.

Tensors are named (the input is ``"input"``; every op writes the tensor of its own name),
activations are signed ``act_bits``-bit integers NCHW (or ``(N, K)``), weights are as in
PyTorch. The op kinds (:mod:`hwq.ir.ops`, one module each, registered in
:data:`~hwq.ir.registry.OPS`):

=====================  ==========================================================
``Conv2d``             integer weights in a :class:`WeightSpec`, any groups, kernel,
                       stride, dilation, padding per side; then :class:`Requant`
``Linear``             integer weights ``(C_out, K)``; then requant
``MaxPool2d``          window maximum (kernel, stride, padding)
``AvgPool2d``          window sum then requant (``1 / (KH*KW)`` folded into ``M, S``)
``GlobalAvgPool2d``    the same over the whole ``H x W``
``Add``                ``requant(a * wa + b * wb)``, the residual add
``Flatten``            ``(C, H, W) -> (C*H*W,)``, channel-major
=====================  ==========================================================

A :class:`Requant` is ``clamp(((acc + bias[c]) * M[c] + 2**(S[c]-1)) >> S[c], lo, hi)``;
ReLU is ``lo = 0``, ReLU6 and Hardtanh set ``hi``. ``input_scale`` maps the float input to
integers and each op's scale maps its output back to floats (for dequantization only).
:func:`hwq.golden.run` executes a network.
"""

from hwq.ir.lowering import Alias, Lowered, Matmul, Pool, Storage
from hwq.ir.network import INPUT, QuantizedNetwork
from hwq.ir.ops import (
    ADD_WEIGHT_MAX,
    Add,
    AvgPool2d,
    Conv2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
)
from hwq.ir.registry import OPS, Op, register
from hwq.ir.spec import FORMAT_KINDS, Requant, WeightSpec

#: Ops with integer weights.
WeightOp = Conv2d | Linear

__all__ = [
    "ADD_WEIGHT_MAX",
    "FORMAT_KINDS",
    "INPUT",
    "OPS",
    "Add",
    "Alias",
    "AvgPool2d",
    "Conv2d",
    "Flatten",
    "GlobalAvgPool2d",
    "Linear",
    "Lowered",
    "Matmul",
    "MaxPool2d",
    "Op",
    "Pool",
    "QuantizedNetwork",
    "Requant",
    "Storage",
    "WeightOp",
    "WeightSpec",
    "register",
]
