"""Activation memory allocation by liveness: every stored tensor gets a region, first fit.

A tensor is live from the layer that writes it (the host writes the network input before
the first layer) to the last layer that reads it (the network output stays live to the
end, for the host to read). Two tensors whose lives overlap get disjoint regions, so a
layer never writes a word it reads (its inputs are live while it runs): the core's
memories rely on that (``no_rw_check``, :mod:`hwq.rtl.core`). Tensors are placed in the
order they are written, each at the lowest address where it overlaps no live neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Interval", "allocate"]


@dataclass(frozen=True)
class Interval:
    """One tensor to place: ``words`` long, live from layer ``start`` to layer ``end``
    (inclusive; ``-1`` is the host's write of the input, ``layers`` its final read)."""

    name: str
    words: int
    start: int
    end: int


def allocate(tensors: list[Interval]) -> tuple[dict[str, int], int]:
    """First-fit bases of ``tensors`` (in the given order) and the peak words used.

    >>> bases, peak = allocate([Interval("x", 10, -1, 0), Interval("a", 6, 0, 1),
    ...                         Interval("b", 4, 1, 2)])
    >>> bases, peak
    ({'x': 0, 'a': 10, 'b': 0}, 16)
    """
    placed: list[tuple[int, int, Interval]] = []   # (base, end address, tensor)
    bases: dict[str, int] = {}
    peak = 0
    for t in tensors:
        busy = sorted((b, e) for b, e, o in placed if o.start <= t.end and t.start <= o.end)
        base = 0
        for b, e in busy:
            if base + t.words <= b:
                break
            base = max(base, e)
        bases[t.name] = base
        placed.append((base, base + t.words, t))
        peak = max(peak, base + t.words)
    return bases, peak
