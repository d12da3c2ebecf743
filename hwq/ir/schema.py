"""Strict reading of JSON manifests: every field checked for type and range, no coercion.

A manifest that does not follow its schema raises :class:`SchemaError` with one message
naming where the field is, the field, the value found and what is allowed, e.g.
``ops[2] 'conv1': field 'stride': 1.7 is not allowed (an integer 1..65536, or a list of
2 of them)``. ``"8"`` is not ``8`` and ``8.0`` is not ``8``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["Fields", "SchemaError"]

_MISSING = object()


class SchemaError(ValueError):
    """A manifest field is missing, unknown, of the wrong type or out of range."""


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class Fields:
    """A JSON object read field by field; :meth:`done` refuses the fields nobody read.

    Parameters
    ----------
    data : object
        what the JSON held (must be a dict).
    where : str
        how messages name this object (``"manifest"``, ``"ops[3] 'fc1'"``).
    """

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: must be a JSON object, not {_short(data)}")
        self.data: dict[str, Any] = data
        self.where = where
        self._read: set[str] = set()

    def _get(self, key: str, default: object) -> object:
        self._read.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise SchemaError(f"{self.where}: field {key!r} is missing")
            return default
        return self.data[key]

    def _bad(self, key: str, value: object, allowed: str) -> SchemaError:
        return SchemaError(f"{self.where}: field {key!r}: {_short(value)} is not allowed "
                           f"({allowed})")

    def has(self, key: str) -> bool:
        return key in self.data

    def int(self, key: str, lo: int, hi: int, default: object = _MISSING) -> int:
        v = self._get(key, default)
        if not _is_int(v) or not lo <= v <= hi:
            raise self._bad(key, v, f"an integer {lo}..{hi}")
        return int(v)

    def ints(self, key: str, lo: int, hi: int, *, lengths: tuple[int, ...],
             default: object = _MISSING) -> tuple[int, ...]:
        """A list of integers of one of the ``lengths``."""
        v = self._get(key, default)
        want = " or ".join(str(n) for n in lengths)
        if (not isinstance(v, list | tuple) or len(v) not in lengths
                or not all(_is_int(x) and lo <= x <= hi for x in v)):
            raise self._bad(key, v, f"a list of {want} integers {lo}..{hi}")
        return tuple(int(x) for x in v)

    def float(self, key: str, *, positive: bool = True, default: object = _MISSING) -> float:
        v = self._get(key, default)
        ok = (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
              and (not positive or v > 0))
        if not ok:
            raise self._bad(key, v, "a finite positive number" if positive else "a finite number")
        return float(v)

    def str(self, key: str, choices: tuple[str, ...] | None = None,
            default: object = _MISSING) -> str:
        v = self._get(key, default)
        if not isinstance(v, str) or (choices is not None and v not in choices):
            allowed = "one of " + ", ".join(repr(c) for c in choices) if choices else "a string"
            raise self._bad(key, v, allowed)
        return v

    def strs(self, key: str, default: object = _MISSING) -> tuple[str, ...]:
        v = self._get(key, default)
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self._bad(key, v, "a list of strings")
        return tuple(v)

    def object(self, key: str, default: object = _MISSING) -> Fields:
        v = self._get(key, default)
        return Fields(v, f"{self.where}: field {key!r}")

    def list(self, key: str) -> list[Any]:
        v = self._get(key, _MISSING)
        if not isinstance(v, list):
            raise self._bad(key, v, "a list")
        return v

    def raw(self, key: str, default: object = _MISSING) -> Any:
        return self._get(key, default)

    def done(self) -> None:
        """Refuse fields that were never read (unknown to the schema)."""
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise SchemaError(f"{self.where}: unknown field(s) {unknown}")
