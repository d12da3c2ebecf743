"""How an op's weights are stored (:class:`WeightSpec`) and requantized (:class:`Requant`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hwq.golden._checks import as_int_array, check_range, signed_range
from hwq.golden.formats import CodebookFormat, IntFormat, PotFormat, WeightFormat
from hwq.golden.requant import M_MAX, S_MAX, S_MIN, requantize

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

    @property
    def channels(self) -> int:
        return int(self.bias.shape[0])

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """``clamp(((acc + bias[c]) * M[c] + 2**(S[c]-1)) >> S[c], lo, hi)``, ``c`` on axis 1
        (:func:`hwq.golden.requant.requantize`)."""
        return requantize(acc, self.bias, self.M, self.S, lo=self.lo, hi=self.hi, axis=1)

    def check_bounds(self, act_bits: int, op: str) -> None:
        """The clamp bounds must lie within the ``act_bits``-bit activation range."""
        lo, hi = signed_range(act_bits)
        if not (lo <= self.lo <= self.hi <= hi):
            raise ValueError(f"{op}: clamp bounds {self.lo}..{self.hi} must lie within the "
                             f"{act_bits}-bit activation range {lo}..{hi}")
