"""The op registry: every op kind of the IR is one class, registered here by its ``kind``.

An op class (a frozen dataclass deriving :class:`Op`, decorated with :func:`register`) is
the one definition of its kind. It carries

* its **shape rule** (:meth:`Op.output_shape`, which also validates the input shapes),
* its **golden function** (:meth:`Op.run`: exact integers, built from :mod:`hwq.golden`),
* its **scale rule** (:meth:`Op.scale`: the output tensor's float scale),
* its **serialization** (:meth:`Op.manifest` and :meth:`Op.from_manifest`), and
* its **lowering** onto the core's hardware primitives (:meth:`Op.lower`, see
  :mod:`hwq.ir.lowering`), from which the layout compiler, the executor and the cycle
  model take everything they need.

Adding an op is one new module in :mod:`hwq.ir.ops` (plus an RTL block if it needs a new
primitive); nothing else switches on op kinds. ``docs/architecture.md`` says more.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from hwq.ir.lowering import Lowered, Storage

__all__ = ["OPS", "Op", "register"]

#: kind -> op class, in registration order.
OPS: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: add an op class to :data:`OPS` under its ``kind``."""
    kind = cls.kind
    if kind in OPS and OPS[kind] is not cls:
        raise ValueError(f"Op kind {kind!r} is registered twice ({OPS[kind].__name__}, "
                         f"{cls.__name__})")
    OPS[kind] = cls
    return cls


@dataclass(frozen=True, eq=False, kw_only=True)
class Op(ABC):
    """One op of a :class:`~hwq.ir.QuantizedNetwork`: reads tensors, writes one.

    Parameters
    ----------
    name : str
        unique in the network; also the name of the tensor the op writes.
    inputs : tuple of str
        the tensors the op reads (op names, or ``"input"`` for the network input). Empty
        means "the previous op's output" (a chain); the network fills it in.
    """

    kind: ClassVar[str] = ""
    #: number of input tensors
    arity: ClassVar[int] = 1
    #: whether the op has integer weights (a :class:`~hwq.ir.WeightSpec`)
    has_weights: ClassVar[bool] = False

    name: str
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Op name must be a non-empty string, not {self.name!r}")
        inputs = self.inputs
        if isinstance(inputs, str) or not all(isinstance(i, str) for i in inputs):
            raise ValueError(f"{self.name}: inputs must be a sequence of tensor names, "
                             f"not {inputs!r}")
        object.__setattr__(self, "inputs", tuple(inputs))
        if self.inputs and len(self.inputs) != self.arity:
            raise ValueError(f"{self.name}: a {self.kind} op reads {self.arity} tensor(s), "
                             f"not {len(self.inputs)} ({list(self.inputs)})")

    # ------------------------------------------------------------------ shape and arithmetic
    @abstractmethod
    def output_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """Per-sample output shape for the input ``shapes``; raises ``ValueError`` naming the
        op when they do not fit."""
        ...

    def check(self, act_bits: int) -> None:
        """Checks beyond shapes (weights, requant ranges, clamp bounds); none by default."""
        return None

    @abstractmethod
    def run(self, xs: list[np.ndarray], act_bits: int) -> np.ndarray:
        """The golden function: int64 output of the batch ``xs`` (one array per input)."""
        ...

    def scale(self, scales: list[float]) -> float:
        """Float scale of the output tensor given the inputs' (default: the first one's)."""
        return scales[0]

    # ------------------------------------------------------------------ serialization
    def manifest(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON fields and integer tensors of the op (beyond ``kind``, ``name``, ``inputs``)."""
        return {}, {}

    @classmethod
    def from_manifest(cls, name: str, inputs: tuple[str, ...], fields: Any,
                      tensors: dict[str, np.ndarray]) -> Op:
        """Inverse of :meth:`manifest`; ``fields`` is a :class:`hwq.ir.schema.Fields`."""
        return cls(name=name, inputs=inputs)

    # ------------------------------------------------------------------ compiler hook
    @abstractmethod
    def lower(self, storages: list[Storage]) -> Lowered:
        """The op on the core's hardware primitives (:mod:`hwq.ir.lowering`), given how its
        inputs are stored."""
        ...
