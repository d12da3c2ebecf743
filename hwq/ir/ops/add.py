"""``Add``: the residual add of two tensors of one shape, with requant.

``y = clamp(((a * wa + b * wb + bias[c]) * M[c] + 2**(S[c]-1)) >> S[c], lo, hi)``

``wa``, ``wb`` are small positive integers (1..:data:`ADD_WEIGHT_MAX`) whose ratio is the
ratio of the two input scales (chosen by integerization to a stated precision); ``M, S``
then rescale to the output. This is the general ``clamp((a*Ma + b*Mb + 2**(S-1)) >> S)`` with
``Ma = wa*M`` and ``Mb = wb*M``: the form the core computes exactly on its MAC array and
requant (a 1x1 :class:`Matmul` over both inputs with the weight ``[wa*I | wb*I]``), on every
PE type. ``lo = 0`` fuses the ReLU that follows a residual block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hwq.golden._checks import as_int_array, check_range, signed_range
from hwq.ir.lowering import Matmul, Storage
from hwq.ir.ops._common import check_requant, check_scale, read_requant, requant_manifest
from hwq.ir.registry import Op, register
from hwq.ir.schema import Fields
from hwq.ir.spec import Requant

#: Largest input weight of an Add (an 8-bit signed value: every PE encodes it exactly).
ADD_WEIGHT_MAX = 127


@register
@dataclass(frozen=True, eq=False, kw_only=True)
class Add(Op):
    kind = "add"
    arity = 2

    weights: tuple[int, int]
    requant: Requant
    out_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.weights
        if (not isinstance(w, list | tuple) or len(w) != 2
                or not all(isinstance(v, int | np.integer) and not isinstance(v, bool)
                           and 1 <= v <= ADD_WEIGHT_MAX for v in w)):
            raise ValueError(f"{self.name}: add weights must be two integers "
                             f"1..{ADD_WEIGHT_MAX}, not {w!r}")
        object.__setattr__(self, "weights", (int(w[0]), int(w[1])))
        check_scale(self)

    def output_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        a, b = shapes
        if a != b:
            raise ValueError(f"{self.name}: add inputs must have one shape, not {a} and {b}")
        if self.requant.channels != a[0]:
            raise ValueError(f"{self.name}: requant has {self.requant.channels} channels, the "
                             f"inputs {a[0]}")
        return a

    def check(self, act_bits: int) -> None:
        check_requant(self, self.requant.channels, act_bits)

    def run(self, xs: list[np.ndarray], act_bits: int) -> np.ndarray:
        lo, hi = signed_range(act_bits)
        a, b = (as_int_array(x, "Add input") for x in xs)
        for x in (a, b):
            check_range(x, lo, hi, "Add inputs", f"{act_bits}-bit signed")
        wa, wb = self.weights
        return self.requant.apply(a * wa + b * wb)

    def scale(self, scales: list[float]) -> float:
        return self.out_scale

    def manifest(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        fields, tensors = requant_manifest(self.requant)
        fields.update(weights=list(self.weights), out_scale=self.out_scale)
        return fields, tensors

    @classmethod
    def from_manifest(cls, name: str, inputs: tuple[str, ...], fields: Fields,
                      tensors: dict[str, np.ndarray]) -> Add:
        return cls(name=name, inputs=inputs, requant=read_requant(fields, tensors),
                   weights=fields.ints("weights", 1, ADD_WEIGHT_MAX, lengths=(2,)),
                   out_scale=fields.float("out_scale"))

    def lower(self, storages: list[Storage]) -> Matmul:
        (c, _, _), wa, wb = storages[0].chw, *self.weights
        if storages[0] != storages[1]:
            raise ValueError(f"{self.name}: add inputs are stored as {storages[0].chw} and "
                             f"{storages[1].chw}; the core adds tensors of one layout")
        w = np.zeros((c, 2 * c, 1, 1), dtype=np.int64)
        w[np.arange(c), np.arange(c)] = wa
        w[np.arange(c), c + np.arange(c)] = wb
        return Matmul(weight=w, requant=self.requant, spec=None, sources=(0, 1))
