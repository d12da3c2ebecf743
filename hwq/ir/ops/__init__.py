"""The op kinds of the IR, one module each (importing this package registers them all)."""

from hwq.ir.ops.add import ADD_WEIGHT_MAX, Add
from hwq.ir.ops.conv import Conv2d
from hwq.ir.ops.flatten import Flatten
from hwq.ir.ops.linear import Linear
from hwq.ir.ops.pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d

__all__ = ["ADD_WEIGHT_MAX", "Add", "AvgPool2d", "Conv2d", "Flatten", "GlobalAvgPool2d",
           "Linear", "MaxPool2d"]
