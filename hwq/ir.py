"""The integer IR: a ``QuantizedNetwork`` is a list of integer ops in hardware formats.

Ops (activations NCHW, weights as in PyTorch):

``Conv2d``  square kernel, stride, zero padding; weights ``(C_out, C_in, k, k)``.
``Linear``  weights ``(C_out, K)``.
``MaxPool2d`` 2x2, stride 2.
``Flatten`` ``(N, C, H, W) -> (N, C*H*W)``, channel-major (PyTorch order).

Conv2d and Linear carry their weights as integer *values* plus a :class:`WeightSpec`
(format kind, bit widths broadcastable to the weight shape so they may vary per output
channel, per input channel or per element block, and a codebook table), and a
:class:`Requant` (bias, ``M``, ``S`` per output channel, clamp bounds; ReLU is
``lo = 0``). The arithmetic of every op is :mod:`hwq.golden`'s;
:func:`hwq.golden.network.run` executes a network.

Activations are signed ``act_bits``-bit integers; ``input_scale`` maps the float input to
integers (``x_int = clamp(round(x / input_scale))``) and each op's ``out_scale`` maps its
integer output back to floats (kept for dequantization only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwq.golden._checks import as_int_array, check_int, check_range, signed_range
from hwq.golden.formats import CodebookFormat, IntFormat, PotFormat, WeightFormat
from hwq.golden.requant import M_MAX, S_MAX, S_MIN

FORMAT_KINDS = ("int", "pot", "codebook")


@dataclass(frozen=True, eq=False)
class WeightSpec:
    """How a layer's weights are stored.

    Parameters
    ----------
    kind : {"int", "pot", "codebook"}
    bits : int array, broadcastable to the weight shape
        code width of each weight (INT 2..8, POT 2..7, CODEBOOK index 1..8), e.g. shape
        ``(C_out, 1, 1, 1)`` for per-output-channel widths or ``()`` for one width.
    table : int array, optional
        the codebook (CODEBOOK only): signed integers of ``table_bits`` bits, one exactly 0.
        A weight with ``b``-bit indices addresses the first ``2**b`` entries, so with mixed
        index widths the zero (and the common values) should come first.
    table_bits : int
        width of the codebook entries (2..8).
    """

    kind: str
    bits: np.ndarray
    table: np.ndarray | None = None
    table_bits: int = 8

    def __post_init__(self) -> None:
        if self.kind not in FORMAT_KINDS:
            raise ValueError(f"Weight format must be one of {', '.join(FORMAT_KINDS)}, "
                             f"not {self.kind!r}")
        object.__setattr__(self, "bits", as_int_array(self.bits, "Weight bit widths"))
        if self.kind == "codebook":
            if self.table is None:
                raise ValueError("A codebook weight format needs a table")
            object.__setattr__(self, "table", as_int_array(self.table, "Codebook table"))
            if self.bits.size and self.table.size > 1 << int(self.bits.max()):
                raise ValueError(f"Codebook table of {self.table.size} entries needs more than "
                                 f"the {int(self.bits.max())}-bit indices given")
        elif self.table is not None:
            raise ValueError(f"Only codebook formats take a table, not {self.kind!r}")

    def formats(self) -> dict[int, WeightFormat]:
        """One golden format per distinct bit width."""
        out: dict[int, WeightFormat] = {}
        for b in np.unique(self.bits).tolist():
            if self.kind == "int":
                out[b] = IntFormat(b)
            elif self.kind == "pot":
                out[b] = PotFormat(b)
            else:  # b-bit indices address the first 2**b entries of the table
                out[b] = CodebookFormat(b, table=tuple(self.table[: 1 << b].tolist()),
                                        table_bits=self.table_bits)
        return out

    def validate(self, weight: np.ndarray, layer: str) -> None:
        """Check every weight is representable at its own bit width."""
        try:
            bits = np.broadcast_to(self.bits, weight.shape)
        except ValueError:
            raise ValueError(f"{layer}: weight bit widths of shape {self.bits.shape} do not "
                             f"broadcast to the weight shape {weight.shape}") from None
        for b, fmt in self.formats().items():
            try:
                fmt.validate(weight[bits == b])
            except ValueError as exc:
                raise ValueError(f"{layer}: {exc}") from None

    def max_bits(self) -> int:
        return int(self.bits.max())

    def storage_bits(self, weight_shape: tuple[int, ...]) -> int:
        """Bits of all weight codes (not the table): ``sum(bits)`` over every weight."""
        return int(np.broadcast_to(self.bits, weight_shape).sum())

    def table_storage_bits(self) -> int:
        return 0 if self.table is None else int(self.table.size * self.table_bits)

    def to_manifest(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "table_bits": self.table_bits}
        return d


@dataclass(frozen=True, eq=False)
class Requant:
    """Per-output-channel requantization (see :func:`hwq.golden.requantize`)."""

    bias: np.ndarray
    M: np.ndarray
    S: np.ndarray
    lo: int
    hi: int

    def __post_init__(self) -> None:
        for name in ("bias", "M", "S"):
            object.__setattr__(self, name, as_int_array(getattr(self, name), f"Requant {name}"))
        channels = self.bias.shape
        if self.bias.ndim != 1 or self.M.shape != channels or self.S.shape != channels:
            raise ValueError(f"Requant bias, M and S must be 1-D of equal length, not "
                             f"{self.bias.shape}, {self.M.shape}, {self.S.shape}")
        check_range(self.bias, *signed_range(32), "Requant bias", "int32")
        check_range(self.M, 1, M_MAX, "Requant multiplier M", "a positive 24-bit integer")
        check_range(self.S, S_MIN, S_MAX, "Requant shift S", "a shift")

    @property
    def relu(self) -> bool:
        return self.lo == 0


@dataclass(frozen=True, eq=False)
class Conv2d:
    name: str
    weight: np.ndarray
    spec: WeightSpec
    requant: Requant
    stride: int = 1
    padding: int = 0
    out_scale: float = 1.0
    kind: str = field(default="conv2d", init=False)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True, eq=False)
class Linear:
    name: str
    weight: np.ndarray
    spec: WeightSpec
    requant: Requant
    out_scale: float = 1.0
    kind: str = field(default="linear", init=False)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True, eq=False)
class MaxPool2d:
    name: str
    kind: str = field(default="maxpool2d", init=False)


@dataclass(frozen=True, eq=False)
class Flatten:
    name: str
    kind: str = field(default="flatten", init=False)


Op = Conv2d | Linear | MaxPool2d | Flatten
WeightOp = Conv2d | Linear


@dataclass(frozen=True, eq=False)
class QuantizedNetwork:
    """An integer network: what the golden model runs and the layout compiler packs.

    Parameters
    ----------
    input_shape : (C, H, W) or (K,)
        one sample's shape (no batch axis).
    act_bits : int
        width of every activation, 2..16, signed.
    input_scale : float
        float input = ``input_scale * x_int``.
    ops : list of ops
    meta : dict
        JSON-serializable facts (method, options, accuracy...); not used by the arithmetic.
    """

    input_shape: tuple[int, ...]
    act_bits: int
    input_scale: float
    ops: list[Op]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        check_int(self.act_bits, "Activation bit width", 2, 16)
        if not (np.isfinite(self.input_scale) and self.input_scale > 0):
            raise ValueError(
                f"Input scale must be a finite positive float, not {self.input_scale!r}")
        names = [op.name for op in self.ops]
        if len(set(names)) != len(names):
            raise ValueError(f"Op names must be unique, not {names}")
        self.validate()

    @property
    def act_range(self) -> tuple[int, int]:
        return signed_range(self.act_bits)

    def weight_ops(self) -> list[WeightOp]:
        return [op for op in self.ops if isinstance(op, Conv2d | Linear)]

    def shapes(self) -> list[tuple[int, ...]]:
        """Per-sample output shape of every op, checking that the ops fit together."""
        shape = self.input_shape
        out = []
        for op in self.ops:
            shape = _output_shape(op, shape)
            out.append(shape)
        return out

    def validate(self) -> None:
        """Check shapes, formats, requant ranges and clamp bounds of every op."""
        lo, hi = self.act_range
        self.shapes()
        for op in self.weight_ops():
            w = op.weight
            if w.dtype != np.int64:
                raise TypeError(f"{op.name}: weights must be int64 values, not {w.dtype}")
            op.spec.validate(w, op.name)
            if op.requant.bias.shape != (w.shape[0],):
                raise ValueError(f"{op.name}: requant has {op.requant.bias.shape[0]} channels, "
                                 f"the weights {w.shape[0]}")
            if not (lo <= op.requant.lo <= op.requant.hi <= hi):
                raise ValueError(
                    f"{op.name}: clamp bounds {op.requant.lo}..{op.requant.hi} must lie within "
                    f"the {self.act_bits}-bit activation range {lo}..{hi}"
                )

    def weight_storage_bits(self, *, include_tables: bool = True) -> int:
        """Bits of every weight code (+ codebook tables); the compression numerator."""
        total = 0
        for op in self.weight_ops():
            total += op.spec.storage_bits(op.weight.shape)
            if include_tables:
                total += op.spec.table_storage_bits()
        return total

    def weight_count(self) -> int:
        return sum(int(op.weight.size) for op in self.weight_ops())


def _output_shape(op: Op, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(op, Conv2d):
        if op.weight.ndim != 4 or op.weight.shape[2] != op.weight.shape[3]:
            raise ValueError(f"{op.name}: conv weights must be (C_out, C_in, k, k), "
                             f"not {op.weight.shape}")
        if len(shape) != 3 or shape[0] != op.weight.shape[1]:
            raise ValueError(f"{op.name}: input of shape {shape} does not fit weights "
                             f"{op.weight.shape} (expects ({op.weight.shape[1]}, H, W))")
        check_int(op.stride, f"{op.name}: stride", 1, 1 << 16)
        check_int(op.padding, f"{op.name}: padding", 0, 1 << 16)
        k = op.weight.shape[2]
        h, w = ((s + 2 * op.padding - k) // op.stride + 1 for s in shape[1:])
        if h < 1 or w < 1:
            raise ValueError(f"{op.name}: input {shape[1]}x{shape[2]} is smaller than the kernel")
        return (op.weight.shape[0], h, w)
    if isinstance(op, Linear):
        if op.weight.ndim != 2 or len(shape) != 1 or shape[0] != op.weight.shape[1]:
            raise ValueError(f"{op.name}: input of shape {shape} does not fit linear weights "
                             f"{op.weight.shape} (flatten first?)")
        return (op.weight.shape[0],)
    if isinstance(op, MaxPool2d):
        if len(shape) != 3 or shape[1] < 2 or shape[2] < 2:
            raise ValueError(f"{op.name}: maxpool 2x2 needs a (C, H, W) input of at least 2x2, "
                             f"not {shape}")
        return (shape[0], shape[1] // 2, shape[2] // 2)
    if isinstance(op, Flatten):
        return (int(np.prod(shape)),)
    raise TypeError(f"Unknown op {op!r}")
