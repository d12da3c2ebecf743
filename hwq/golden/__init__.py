"""hwq.golden: the arithmetic spec and golden model — the one source of truth.

Everything the hardware computes is defined here first, in exact integer NumPy
(docs/architecture.md, section 3): weight formats (:mod:`~hwq.golden.formats`), the ops and the
accumulator bound (:mod:`~hwq.golden.ops`, which re-exports convolution from
:mod:`~hwq.golden.conv`, pooling from :mod:`~hwq.golden.pool`, the residual add from
:mod:`~hwq.golden.eltwise` and the window geometry from :mod:`~hwq.golden.window`),
requantization and the float-scale to ``(M, S)`` conversion (:mod:`~hwq.golden.requant`),
the PE decompositions (:mod:`~hwq.golden.bitserial`) and the cycle model
(:mod:`~hwq.golden.cycles`).
"""

from hwq.golden.bitserial import (
    bitplanes,
    bitserial_linear,
    from_bitplanes,
    plane_coefficients,
    shift_add_linear,
)
from hwq.golden.formats import (
    CodebookFormat,
    IntFormat,
    PotFormat,
    WeightFormat,
    format_from_dict,
    make_format,
)
from hwq.golden.gemm import int_matmul
from hwq.golden.network import quantize_input, run, run_op
from hwq.golden.ops import (
    AddMultipliers,
    accumulator_bits,
    accumulator_range,
    add,
    add_multipliers,
    avgpool2d_sum,
    check_accumulator,
    conv2d,
    conv2d_output_size,
    conv_output_size,
    flatten,
    global_avgpool_sum,
    linear,
    maxpool2d,
    padding4,
    pair,
    worst_case_accumulator_bits,
)
from hwq.golden.requant import (
    M_BITS,
    Multiplier,
    multiplier_from_scale,
    requantize,
    requantize_reference,
)

__all__ = [
    "M_BITS",
    "AddMultipliers",
    "CodebookFormat",
    "IntFormat",
    "Multiplier",
    "PotFormat",
    "WeightFormat",
    "accumulator_bits",
    "accumulator_range",
    "add",
    "add_multipliers",
    "avgpool2d_sum",
    "bitplanes",
    "bitserial_linear",
    "check_accumulator",
    "conv2d",
    "conv2d_output_size",
    "conv_output_size",
    "flatten",
    "format_from_dict",
    "from_bitplanes",
    "global_avgpool_sum",
    "int_matmul",
    "linear",
    "make_format",
    "maxpool2d",
    "multiplier_from_scale",
    "padding4",
    "pair",
    "plane_coefficients",
    "quantize_input",
    "run",
    "run_op",
    "requantize",
    "requantize_reference",
    "shift_add_linear",
    "worst_case_accumulator_bits",
]
