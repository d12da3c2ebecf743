"""Weight formats: how an integer weight is stored as a code in hardware.

Three formats (docs/architecture.md, section 3). A format maps integer weight *values* (what the
arithmetic uses) to unsigned *codes* (what the memories hold) and back:

``INT(b)``
    two's complement, ``b`` in 2..8; code = value mod 2**b. Used by the bit-serial PE.
``POT(b)``
    sign bit (code bit ``b-1``) and a ``(b-1)``-bit field ``k``: ``k = 0`` is zero,
    ``k >= 1`` is magnitude ``2**(k-1)``. Used by the shift-add PE:
    ``acc +/- (x << (k-1))``. ``b`` in 2..7 (shifts up to 62 bits).
``CODEBOOK(b)``
    ``b``-bit index (``b`` in 1..8) into a table of at most ``2**b`` signed integers of
    ``table_bits`` (2..8) bits; at least one entry is exactly zero.

All functions are vectorized and refuse bad input with an error naming the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from hwq.golden._checks import as_int_array, check_int, check_range, signed_range


def _code_dtype(bits: int) -> type[np.unsignedinteger]:
    return np.uint8 if bits <= 8 else np.uint16


@dataclass(frozen=True)
class IntFormat:
    """``INT(b)``: two's complement weights.

    >>> f = IntFormat(4)
    >>> f.min_value, f.max_value
    (-8, 7)
    >>> f.encode([-8, -1, 0, 7]).tolist()
    [8, 15, 0, 7]
    >>> f.decode([8, 15, 0, 7]).tolist()
    [-8, -1, 0, 7]
    """

    bits: int
    kind: ClassVar[str] = "int"
    BITS: ClassVar[tuple[int, int]] = (2, 8)

    def __post_init__(self) -> None:
        check_int(self.bits, "INT weight bit width", *self.BITS)

    @property
    def min_value(self) -> int:
        return signed_range(self.bits)[0]

    @property
    def max_value(self) -> int:
        return signed_range(self.bits)[1]

    def validate(self, values: object) -> np.ndarray:
        """Check that ``values`` are representable; return them as int64."""
        arr = as_int_array(values, "INT weights")
        check_range(arr, self.min_value, self.max_value, "INT weights",
                    f"{self.bits}-bit two's complement")
        return arr

    def encode(self, values: object) -> np.ndarray:
        arr = self.validate(values)
        return (arr & ((1 << self.bits) - 1)).astype(_code_dtype(self.bits))

    def decode(self, codes: object) -> np.ndarray:
        c = _check_codes(codes, self.bits, "INT codes")
        return np.where(c >= (1 << (self.bits - 1)), c - (1 << self.bits), c)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bits": self.bits}


@dataclass(frozen=True)
class PotFormat:
    """``POT(b)``: sign and power-of-two exponent; the shift-add PE's weights.

    Value ``0`` has code 0; ``+/-2**e`` has ``k = e + 1`` and the sign in bit ``b-1``.

    >>> f = PotFormat(3)          # k in 0..3: values 0, +/-1, +/-2, +/-4
    >>> f.encode([0, 1, -1, 4, -4]).tolist()
    [0, 1, 5, 3, 7]
    >>> f.decode([0, 1, 5, 3, 7, 4]).tolist()   # code 4 is "negative zero"
    [0, 1, -1, 4, -4, 0]
    >>> f.max_exponent
    2
    """

    bits: int
    kind: ClassVar[str] = "pot"
    BITS: ClassVar[tuple[int, int]] = (2, 7)

    def __post_init__(self) -> None:
        check_int(self.bits, "POT weight bit width", *self.BITS)

    @property
    def max_exponent(self) -> int:
        """Largest ``e`` with ``2**e`` representable: ``2**(b-1) - 2``."""
        return (1 << (self.bits - 1)) - 2

    @property
    def min_value(self) -> int:
        return -(1 << self.max_exponent)

    @property
    def max_value(self) -> int:
        return 1 << self.max_exponent

    def validate(self, values: object) -> np.ndarray:
        arr = as_int_array(values, "POT weights")
        mag = np.abs(arr)
        ok = (arr == 0) | ((mag > 0) & ((mag & (mag - 1)) == 0) & (mag <= self.max_value))
        if not ok.all():
            index = tuple(int(i) for i in np.argwhere(~ok)[0])
            raise ValueError(
                f"POT weights must be 0 or +/-2**e with e in 0..{self.max_exponent} "
                f"({self.bits}-bit POT); {int((~ok).sum())} value(s) are not, "
                f"first {int(arr[index])} at index {index}"
            )
        return arr

    def exponents(self, values: object) -> np.ndarray:
        """The field ``k`` of each value: 0 for zero, ``e + 1`` for ``+/-2**e``."""
        arr = self.validate(values)
        mag = np.abs(arr)
        k = np.zeros(arr.shape, dtype=np.int64)
        nz = mag > 0
        # exact for powers of two up to 2**62: log2 of a float64 power of two is exact
        k[nz] = np.log2(mag[nz].astype(np.float64)).astype(np.int64) + 1
        return k

    def encode(self, values: object) -> np.ndarray:
        arr = self.validate(values)
        k = self.exponents(arr)
        sign = (arr < 0).astype(np.int64) << (self.bits - 1)
        return (sign | k).astype(_code_dtype(self.bits))

    def decode(self, codes: object) -> np.ndarray:
        c = _check_codes(codes, self.bits, "POT codes")
        k = c & ((1 << (self.bits - 1)) - 1)
        negative = (c >> (self.bits - 1)) & 1
        mag = np.where(k > 0, np.left_shift(1, np.maximum(k - 1, 0)), 0)
        return np.where(negative == 1, -mag, mag)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bits": self.bits}


@dataclass(frozen=True)
class CodebookFormat:
    """``CODEBOOK(b)``: index into a per-layer table of signed integers.

    >>> f = CodebookFormat(2, table=(0, 3, -3, 7), table_bits=4)
    >>> f.encode([7, 0, -3]).tolist()
    [3, 0, 2]
    >>> f.decode([3, 0, 2]).tolist()
    [7, 0, -3]
    """

    bits: int
    table: tuple[int, ...] = field(default=())
    table_bits: int = 8
    kind: ClassVar[str] = "codebook"
    BITS: ClassVar[tuple[int, int]] = (1, 8)
    TABLE_BITS: ClassVar[tuple[int, int]] = (2, 8)

    def __post_init__(self) -> None:
        check_int(self.bits, "CODEBOOK index bit width", *self.BITS)
        check_int(self.table_bits, "CODEBOOK table entry bit width", *self.TABLE_BITS)
        table = as_int_array(np.asarray(self.table, dtype=np.int64) if len(self.table) else
                             np.zeros(0, np.int64), "CODEBOOK table")
        if table.ndim != 1 or not 1 <= table.size <= (1 << self.bits):
            raise ValueError(
                f"CODEBOOK table must hold 1..{1 << self.bits} entries for {self.bits}-bit "
                f"indices, not {table.size}"
            )
        lo, hi = signed_range(self.table_bits)
        check_range(table, lo, hi, "CODEBOOK table entries", f"{self.table_bits}-bit signed")
        if not (table == 0).any():
            raise ValueError(f"CODEBOOK table must contain an exact zero, not {table.tolist()}")
        object.__setattr__(self, "table", tuple(int(v) for v in table))

    @property
    def table_array(self) -> np.ndarray:
        return np.asarray(self.table, dtype=np.int64)

    @property
    def min_value(self) -> int:
        return min(self.table)

    @property
    def max_value(self) -> int:
        return max(self.table)

    def validate(self, values: object) -> np.ndarray:
        arr = as_int_array(values, "CODEBOOK weights")
        ok = np.isin(arr, self.table_array)
        if not ok.all():
            index = tuple(int(i) for i in np.argwhere(~ok)[0])
            raise ValueError(
                f"CODEBOOK weights must be entries of the table {list(self.table)}; "
                f"{int((~ok).sum())} value(s) are not, first {int(arr[index])} at index {index}"
            )
        return arr

    def encode(self, values: object) -> np.ndarray:
        """Index of each value in the table (the first one, if an entry repeats)."""
        arr = self.validate(values)
        table = self.table_array
        order = np.argsort(table, kind="stable")
        pos = np.searchsorted(table[order], arr, side="left")
        return order[pos].astype(_code_dtype(self.bits))

    def decode(self, codes: object) -> np.ndarray:
        c = _check_codes(codes, self.bits, "CODEBOOK indices")
        check_range(c, 0, len(self.table) - 1, "CODEBOOK indices",
                    f"within the {len(self.table)}-entry table")
        return self.table_array[c]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bits": self.bits, "table": list(self.table),
                "table_bits": self.table_bits}


WeightFormat = IntFormat | PotFormat | CodebookFormat


def _check_codes(codes: object, bits: int, name: str) -> np.ndarray:
    arr = as_int_array(codes, name)
    check_range(arr, 0, (1 << bits) - 1, name, f"unsigned {bits}-bit codes")
    return arr


def make_format(kind: str, bits: int, **kw: object) -> WeightFormat:
    """Build a format from its name: ``make_format("pot", 4)``."""
    classes = {"int": IntFormat, "pot": PotFormat, "codebook": CodebookFormat}
    if kind not in classes:
        raise ValueError(f"Weight format must be one of {sorted(classes)}, not {kind!r}")
    return classes[kind](bits, **kw)


def format_from_dict(d: dict) -> WeightFormat:
    """Inverse of ``fmt.to_dict()``."""
    d = dict(d)
    kind = d.pop("kind", None)
    if "table" in d:
        d["table"] = tuple(d["table"])
    return make_format(str(kind), **d)
