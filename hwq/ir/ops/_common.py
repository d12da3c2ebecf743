"""Parts shared by the op modules: weights + requant, their checks and their serialization."""

from __future__ import annotations

from typing import Any

import numpy as np

from hwq.golden._checks import signed_range
from hwq.ir.schema import Fields
from hwq.ir.spec import FORMAT_KINDS, Requant, WeightSpec

ACT_BITS_MAX = 16


def check_scale(op: Any) -> None:
    s = op.out_scale
    if isinstance(s, bool) or not isinstance(s, int | float) or not (np.isfinite(s) and s > 0):
        raise ValueError(f"{op.name}: out_scale must be a finite positive float, not {s!r}")
    object.__setattr__(op, "out_scale", float(s))


def check_requant(op: Any, channels: int, act_bits: int) -> None:
    """``op.requant`` has ``channels`` channels and clamp bounds within the activations."""
    rq = op.requant
    if not isinstance(rq, Requant):
        raise TypeError(f"{op.name}: requant must be an hwq.ir.Requant, not {type(rq).__name__}")
    if rq.channels != channels:
        raise ValueError(f"{op.name}: requant has {rq.channels} channels, the op {channels}")
    rq.check_bounds(act_bits, op.name)


def check_weights(op: Any, act_bits: int) -> None:
    """Integer weights representable in ``op.spec``, a requant per output channel."""
    w = op.weight
    if not isinstance(w, np.ndarray) or w.dtype != np.int64:
        raise TypeError(f"{op.name}: weights must be an int64 array, not "
                        f"{getattr(w, 'dtype', type(w).__name__)}")
    if not isinstance(op.spec, WeightSpec):
        raise TypeError(f"{op.name}: spec must be an hwq.ir.WeightSpec, "
                        f"not {type(op.spec).__name__}")
    op.spec.validate(w, op.name)
    check_requant(op, int(w.shape[0]), act_bits)


def requant_manifest(rq: Requant) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    return {"lo": rq.lo, "hi": rq.hi}, {"bias": rq.bias, "M": rq.M, "S": rq.S}


def read_requant(f: Fields, tensors: dict[str, np.ndarray]) -> Requant:
    lo, hi = signed_range(ACT_BITS_MAX)
    return Requant(bias=tensors["bias"], M=tensors["M"], S=tensors["S"],
                   lo=f.int("lo", lo, hi), hi=f.int("hi", lo, hi))


def weights_manifest(op: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    fields, tensors = requant_manifest(op.requant)
    fields.update(spec={"kind": op.spec.kind, "table_bits": op.spec.table_bits},
                  out_scale=op.out_scale)
    tensors.update(weight=op.weight, bits=op.spec.bits)
    if op.spec.table is not None:
        tensors["table"] = op.spec.table
    return fields, tensors


def read_weights(f: Fields, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """``weight``, ``spec``, ``requant`` and ``out_scale`` keywords of a weighted op."""
    spec = f.object("spec")
    kind = spec.str("kind", FORMAT_KINDS)
    table_bits = spec.int("table_bits", 2, 8)
    spec.done()
    return dict(weight=tensors["weight"],
                spec=WeightSpec(kind=kind, bits=tensors["bits"], table=tensors.get("table"),
                                table_bits=table_bits),
                requant=read_requant(f, tensors), out_scale=f.float("out_scale"))


def ones_depthwise(channels: int, kh: int, kw: int) -> np.ndarray:
    """The dense ``(C, C, kh, kw)`` weight of a depthwise window sum (ones on the diagonal)."""
    w = np.zeros((channels, channels, kh, kw), dtype=np.int64)
    w[np.arange(channels), np.arange(channels)] = 1
    return w
