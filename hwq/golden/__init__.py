"""hwq.golden: the arithmetic spec and golden model — the one source of truth.

Everything the hardware computes is defined here first, in exact integer NumPy
(DESIGN.md section 3): weight formats (:mod:`~hwq.golden.formats`), the ops and the
accumulator bound (:mod:`~hwq.golden.ops`), requantization and the float-scale to
``(M, S)`` conversion (:mod:`~hwq.golden.requant`), the PE decompositions
(:mod:`~hwq.golden.bitserial`) and the cycle model (:mod:`~hwq.golden.cycles`).
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
    accumulator_bits,
    accumulator_range,
    check_accumulator,
    conv2d,
    conv2d_output_size,
    flatten,
    linear,
    maxpool2d,
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
    "CodebookFormat",
    "IntFormat",
    "Multiplier",
    "PotFormat",
    "WeightFormat",
    "accumulator_bits",
    "accumulator_range",
    "bitplanes",
    "bitserial_linear",
    "check_accumulator",
    "conv2d",
    "conv2d_output_size",
    "flatten",
    "format_from_dict",
    "from_bitplanes",
    "int_matmul",
    "linear",
    "make_format",
    "maxpool2d",
    "multiplier_from_scale",
    "plane_coefficients",
    "quantize_input",
    "run",
    "run_op",
    "requantize",
    "requantize_reference",
    "shift_add_linear",
    "worst_case_accumulator_bits",
]
