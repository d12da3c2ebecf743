"""The points of a sweep: method x bits x PE x lanes x simd (x weights on chip or external) for
one model, from flags or TOML.

A :class:`Point` is one design: a quantization (method, weight bits, seed) of the workload's
model and a core (PE type, lanes, simd, where its weights live) that runs it. :func:`grid`
makes every combination, drops those that cannot exist (a method's weight format the PE does
not take, bits outside the method's range) with the reason, and optionally draws a seeded
random sample of the rest.
"""

from __future__ import annotations

import itertools
import random
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hwq.config import PE_TYPES, CoreConfig

__all__ = ["DEFAULTS", "WEIGHT_AXIS", "Point", "check_memory", "core_inputs", "grid", "read_toml"]

#: The sweep of a bare ``hwq explore --model M``: 3 methods x 3 bit widths x 3 PE types x
#: 2 array sizes (the pairs that exist: INQ on shift_add, uniform on bit_serial and multiply,
#: SLQ on multiply).
DEFAULTS: dict[str, Any] = {
    "methods": ["inq", "uniform", "slq"],
    "bits": [2, 3, 4],
    "pe": list(PE_TYPES),
    "lanes": [4, 8],
    "simd": [8],
    "seed": 0,
    "sample": None,
    "weights": ["onchip"],
    "ext_bits": 64,
    "mem_latency": 4,
}

#: Where a point's weights live: every weight in the core's weight memory, or streamed in
#: double-buffered tiles over the core's AXI4 master from external memory
#: (:mod:`hwq.layout.tiling`).
WEIGHT_AXIS = ("onchip", "external")


@dataclass(frozen=True, order=True)
class Point:
    """One design of the sweep (hashable; its fields are the table's first columns)."""

    model: str
    method: str
    bits: int
    pe: str
    lanes: int
    simd: int
    seed: int = 0
    weights: str = "onchip"

    @property
    def label(self) -> str:
        return (f"{self.method} {self.bits}b / {self.pe} {self.lanes}x{self.simd}"
                + (" / external weights" if self.weights == "external" else "")
                + (f" / seed {self.seed}" if self.seed else ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ints(name: str, values: Any, lo: int, hi: int) -> list[int]:
    values = list(values) if isinstance(values, list | tuple) else [values]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name} must be integers in {lo}..{hi}, not {v!r}")
    if not values:
        raise ValueError(f"{name} needs at least one value")
    return sorted(set(values))


def grid(model: str, *, methods: list[str], bits: list[int], pe: list[str], lanes: list[int],
         simd: list[int], seed: int = 0, sample: int | None = None,
         weights: list[str] | tuple[str, ...] = ("onchip",)
         ) -> tuple[list[Point], list[dict[str, Any]]]:
    """``(points, skipped)``: every valid combination (or a seeded sample of ``sample`` of
    them) and each dropped combination with its reason. Bad values raise ``ValueError``."""
    from hwq.quant.methods import get_method

    bits = _ints("--bits", bits, 1, 8)
    lane_values = _ints("--lanes", lanes, *CoreConfig.INT_FIELDS["lanes"][1:])
    simd_values = _ints("--simd", simd, *CoreConfig.INT_FIELDS["simd"][1:])
    for p in pe:
        if p not in PE_TYPES:
            raise ValueError(f"PE type must be one of {', '.join(PE_TYPES)}, not {p!r}")
    if not methods or not pe:
        raise ValueError("A sweep needs at least one method and one PE type")
    weights = [weights] if isinstance(weights, str) else list(weights)
    for place in weights:
        if place not in WEIGHT_AXIS:
            raise ValueError(f"--weights must be among {', '.join(WEIGHT_AXIS)}, not {place!r}")
    if not weights:
        raise ValueError("--weights needs at least one of onchip, external")
    places = [p for p in WEIGHT_AXIS if p in weights]
    specs = {m: get_method(m) for m in methods}  # unknown methods: one clear error
    for name, spec in specs.items():
        if spec.bits_optional:
            raise ValueError(f"Method {name!r} needs a size budget, which hwq explore does not "
                             "sweep; allowed: methods with a bit width")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Seed must be a non-negative integer, not {seed!r}")
    points: list[Point] = []
    skipped: list[dict[str, Any]] = []
    for m, b, p in itertools.product(methods, bits, pe):
        spec = specs[m]
        takes = CoreConfig(pe=p).formats
        reason = None
        if spec.weights not in takes:
            reason = (f"{m} gives {spec.weights.upper()} weights; the {p} PE takes "
                      f"{' and '.join(f.upper() for f in takes)}")
        else:
            try:
                spec.check_bits(m, b)
            except ValueError as exc:
                reason = str(exc)
        if reason:
            skipped.append({"method": m, "bits": b, "pe": p, "reason": reason})
            continue
        points += [Point(model, m, b, p, la, s, seed, place)
                   for la, s, place in itertools.product(lane_values, simd_values, places)]
    if sample is not None:
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            raise ValueError(f"--sample must be a positive integer, not {sample!r}")
        if sample < len(points):
            points = sorted(random.Random(seed).sample(points, sample))
    if not points:
        raise ValueError("The sweep has no point: every combination was dropped ("
                         + "; ".join(sorted({s["reason"] for s in skipped})) + ")")
    return points, skipped


#: Keys a sweep TOML file may hold (any may be left out; flags given on the command line win).
TOML_KEYS = ("model", "methods", "bits", "pe", "lanes", "simd", "seed", "sample", "weights",
             "ext_bits", "mem_latency", "target", "device")


def read_toml(path: str | Path) -> dict[str, Any]:
    """A sweep file: top-level keys of :data:`TOML_KEYS` (lists or single values)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"No sweep file at {p}")
    try:
        doc = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p} is not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - set(TOML_KEYS))
    if unknown:
        raise ValueError(f"{p}: unknown key(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(TOML_KEYS)}")
    for key in ("methods", "pe", "weights"):
        if key in doc and isinstance(doc[key], str):
            doc[key] = [doc[key]]
    return doc


def core_inputs(point: Point, *, ext_bits: int = 64, mem_latency: int = 4) -> dict[str, Any]:
    """The core half of a point's compile stage: PE, lanes, simd and, for external weights,
    the port width and the memory latency its cycles are modelled at (left out for on-chip
    weights, so their cached stages keep their keys)."""
    core: dict[str, Any] = {"pe": point.pe, "lanes": point.lanes, "simd": point.simd}
    if point.weights == "external":
        check_memory(ext_bits, mem_latency)
        core.update(weights="external", ext_bits=ext_bits, mem_latency=mem_latency)
    return core


def check_memory(ext_bits: Any, mem_latency: Any) -> None:
    """Refuse an external port width or a memory latency the sweep cannot use."""
    if ext_bits not in CoreConfig.EXT_BITS[1:] or isinstance(ext_bits, bool):
        raise ValueError(f"--ext-bits must be one of "
                         f"{', '.join(map(str, CoreConfig.EXT_BITS[1:]))}, not {ext_bits!r}")
    if isinstance(mem_latency, bool) or not isinstance(mem_latency, int) \
            or not 1 <= mem_latency <= 1 << 20:
        raise ValueError(f"--mem-latency must be an integer in 1..{1 << 20}, not "
                         f"{mem_latency!r}")
