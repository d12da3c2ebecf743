"""``QuantizedNetwork``: named integer tensors and the ops over them, in topological order."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwq.golden._checks import check_int, signed_range
from hwq.ir.registry import Op

#: Name of the network's input tensor.
INPUT = "input"


@dataclass(frozen=True, eq=False)
class QuantizedNetwork:
    """An integer network: what the golden model runs and the layout compiler packs.

    Every op writes one tensor named after the op and reads the tensors named in its
    ``inputs`` (``"input"`` is the network input). Ops are listed in a topological order, the
    order the core runs them; a tensor may be read by several ops (a residual fork). The
    output of the network is the last op's tensor; every other op's tensor must be read.
    An op with empty ``inputs`` reads the previous op's output (or the input), so a chain
    needs no names.

    Parameters
    ----------
    input_shape : (C, H, W) or (K,)
        one sample's shape (no batch axis).
    act_bits : int
        width of every activation, 2..16, signed.
    input_scale : float
        float input = ``input_scale * x_int``.
    ops : list of ops (:mod:`hwq.ir.ops`)
    meta : dict
        JSON-serializable facts (method, options, accuracy...); not used by the arithmetic.
    """

    INPUT: ClassVar[str] = INPUT

    input_shape: tuple[int, ...]
    act_bits: int
    input_scale: float
    ops: list[Op]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = self.input_shape
        if (not isinstance(shape, list | tuple) or len(shape) not in (1, 3)
                or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1
                           for s in shape)):
            raise ValueError(f"Input shape must be (C, H, W) or (K,) of positive integers, "
                             f"not {shape!r}")
        object.__setattr__(self, "input_shape", tuple(int(s) for s in shape))
        check_int(self.act_bits, "Activation bit width", 2, 16)
        s = self.input_scale
        if isinstance(s, bool) or not isinstance(s, int | float) or not (np.isfinite(s) and s > 0):
            raise ValueError(f"Input scale must be a finite positive float, not {s!r}")
        if not isinstance(self.ops, list | tuple) or not self.ops:
            raise ValueError("A network needs at least one op")
        ops: list[Op] = []
        for op in self.ops:
            if not isinstance(op, Op):
                raise TypeError(f"Ops must be hwq.ir ops, not {type(op).__name__}")
            if not op.inputs:
                prev = ops[-1].name if ops else INPUT
                op = dataclasses.replace(op, inputs=(prev,) * op.arity)
            ops.append(op)
        object.__setattr__(self, "ops", ops)
        if not isinstance(self.meta, dict):
            raise TypeError(f"Network meta must be a dict, not {type(self.meta).__name__}")
        self.validate()

    # ---------------------------------------------------------------------- structure
    @property
    def act_range(self) -> tuple[int, int]:
        return signed_range(self.act_bits)

    @property
    def output(self) -> str:
        """Name of the output tensor (the last op's)."""
        return self.ops[-1].name

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes()[-1]

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(f"No op named {name!r}")

    def weight_ops(self) -> list[Op]:
        """The ops with integer weights (conv2d, linear), in order."""
        return [op for op in self.ops if op.has_weights]

    def consumers(self) -> dict[str, list[str]]:
        """Tensor name -> the ops that read it, in order."""
        out: dict[str, list[str]] = {INPUT: []}
        for op in self.ops:
            out[op.name] = []
            for t in op.inputs:
                out[t].append(op.name)
        return out

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor name -> per-sample shape, the input included."""
        shapes = {INPUT: self.input_shape}
        for op in self.ops:
            shapes[op.name] = op.output_shape([shapes[t] for t in op.inputs])
        return shapes

    def shapes(self) -> list[tuple[int, ...]]:
        """Per-sample output shape of every op, in order."""
        shapes = self.tensor_shapes()
        return [shapes[op.name] for op in self.ops]

    def scales(self) -> dict[str, float]:
        """Tensor name -> float scale (``float = scale * int``), the input included."""
        scales = {INPUT: float(self.input_scale)}
        for op in self.ops:
            scales[op.name] = float(op.scale([scales[t] for t in op.inputs]))
        return scales

    # ---------------------------------------------------------------------- validation
    def validate(self) -> None:
        """Names, graph order, shapes, formats, requant ranges and clamp bounds of every op."""
        names = [op.name for op in self.ops]
        if len(set(names)) != len(names) or INPUT in names:
            raise ValueError(f"Op names must be unique, not {names}"
                             + (" ('input' names the network input)" if INPUT in names else ""))
        known = {INPUT}
        used: set[str] = set()
        for i, op in enumerate(self.ops):
            if op.name in known:
                what = "the network input's name" if op.name == INPUT else "used twice"
                raise ValueError(f"Op name {op.name!r} (op {i}) is {what}; op names must be "
                                 "unique and not 'input'")
            for t in op.inputs:
                if t not in known:
                    raise ValueError(f"{op.name}: reads tensor {t!r}, which no earlier op "
                                     "writes (ops must be in topological order)")
                used.add(t)
            known.add(op.name)
        dead = [op.name for op in self.ops[:-1] if op.name not in used]
        if dead:
            raise ValueError(f"The output of op(s) {dead} is never read; a network has one "
                             f"output, the last op's ({self.ops[-1].name!r})")
        if INPUT not in used:
            raise ValueError("No op reads the network input")
        self.tensor_shapes()
        for op in self.ops:
            op.check(self.act_bits)

    # ---------------------------------------------------------------------- storage
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
