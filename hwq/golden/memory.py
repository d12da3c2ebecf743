"""Timing of the external memory: the core's weight loads over ``m_axi`` and the waits they
cause, exact for a memory of fixed latency that returns one beat per cycle.

A core with the ``m_axi`` port (:attr:`hwq.config.CoreConfig.ext_bits`) runs each descriptor
as: its read (1 cycle), its *load check* (wait while a load is in flight if the descriptor
waits or starts a load; then start its load), then its work. The DMA reads a load's
``words * beats`` beats (``beats`` per weight word, :attr:`hwq.layout.words.CoreWords.ext_beats`)
in INCR bursts aligned to ``ext_burst`` beats (so a load's first burst may be shorter), with
at most ``ext_outstanding`` bursts in flight, and writes each word into the weight buffer
the cycle after its last beat.

The memory model (``latency`` L): a burst whose read address is accepted in cycle ``a``
returns its first beat in cycle ``a + L`` at the earliest and one beat per cycle, bursts in
order, the read address always accepted. Then, for a load started in cycle ``x``::

    a_0 = x + 1;  a_j = max(a_{j-1} + 1, e_{j-O} + 1)      (address of burst j accepted)
    f_j = max(a_j + L, e_{j-1} + 1);  e_j = f_j + n_j - 1   (its first and last beat)
    idle from e_last + 2

and a descriptor's counter is its cycles without waiting plus the cycles its load check
waits. A load of activation words (``ld_act``) is the same with ``act_beats`` beats per
word.

A store (a descriptor that writes ``st_words`` activation words to external word
``st_dst``) waits like a load, starts in cycle ``x`` and ends the descriptor when every
write is acknowledged. The memory accepts write addresses and data at once and answers a
burst ``L`` cycles after both its address and its last data beat, in order::

    w_k = x + 2 + k                                         (data beat k)
    a_0 = x + 1;  a_j = max(a_{j-1} + 1, b_{j-O} + 1)       (address of burst j accepted)
    b_j = max(max(a_j, w_{last beat of j}) + L, b_{j-1} + 1) (its response)
    idle from b_last + 2

so the descriptor counts its read and check, the wait, and ``b_last + 2 - x`` cycles.

With any other memory (stalls, variable latency) the outputs are the same and each
counter is still ``cycles + wait`` with ``wait >= 0``: :func:`schedule` at the memory's
smallest latency is a lower bound, and the core's ``STALL_CYCLES`` register counts the
waits actually taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwq.golden._checks import check_int
from hwq.hardware import DMA_COMMIT_CYCLES, DMA_ISSUE_CYCLES

__all__ = ["AXI_RAM_LATENCY", "SIM_BASE", "MemoryTiming", "bursts", "load_cycles", "schedule",
           "stall_cycles", "store_cycles"]

#: Byte address where the simulated memories hold a program's external image.
SIM_BASE = 0x1000_0000
#: The latency of cocotbext-axi's ``AxiRam`` (0.1.28), the memory of the cocotb backend:
#: measured, its timing is this module's model at this latency.
AXI_RAM_LATENCY = 2


@dataclass(frozen=True)
class MemoryTiming:
    """The simulated external memory: ``latency`` cycles from an accepted read address to
    its first beat, and with probability ``stall`` per cycle and channel a stall (a dropped
    ``arready`` or a withheld beat), drawn from ``seed``."""

    latency: int = 4
    stall: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.latency, "Memory latency", 1, 1 << 20)
        if isinstance(self.stall, bool) or not isinstance(self.stall, (int, float)) \
                or not 0 <= self.stall < 1:
            raise ValueError(f"Memory stall probability must be in [0, 1), not {self.stall!r}")
        check_int(self.seed, "Memory stall seed", 0, (1 << 63) - 1)

    @property
    def fixed_latency(self) -> int | None:
        """The latency when it is fixed (no stalls): the model is then exact."""
        return None if self.stall else self.latency


def bursts(first_beat: int, beats: int, burst: int) -> list[int]:
    """Lengths of the INCR bursts reading beats ``first_beat .. first_beat + beats - 1``,
    cut at multiples of ``burst``.

    >>> bursts(6, 12, 4)
    [2, 4, 4, 2]
    """
    out = []
    b, end = first_beat, first_beat + beats
    while b < end:
        n = min(end, (b // burst + 1) * burst) - b
        out.append(n)
        b += n
    return out


def load_cycles(first_beat: int, beats: int, *, burst: int, outstanding: int,
                latency: int) -> int:
    """Cycles from the cycle a load starts to the first cycle its DMA is idle again.

    >>> load_cycles(0, 8, burst=4, outstanding=2, latency=3)   # 1 + 3 + 8 - 1 + 2
    13
    >>> load_cycles(0, 8, burst=4, outstanding=1, latency=3)   # the second burst waits
    16
    """
    latency = check_int(latency, "Memory latency", 1, 1 << 20)
    if beats <= 0:
        return 0
    lengths = bursts(first_beat, beats, burst)
    a_prev = e_prev = None
    ends: list[int] = []
    for j, n in enumerate(lengths):
        a = DMA_ISSUE_CYCLES if j == 0 else a_prev + 1
        if j >= outstanding:
            a = max(a, ends[j - outstanding] + 1)
        f = a + latency if e_prev is None else max(a + latency, e_prev + 1)
        e = f + n - 1
        ends.append(e)
        a_prev, e_prev = a, e
    return e_prev + DMA_COMMIT_CYCLES


def store_cycles(first_beat: int, beats: int, *, burst: int, outstanding: int,
                 latency: int) -> int:
    """Cycles from the cycle a store starts to the first cycle its DMA is idle again.

    >>> store_cycles(0, 4, burst=4, outstanding=1, latency=3)   # b_0 = (2 + 3) + 3 = 8
    10
    >>> store_cycles(0, 8, burst=4, outstanding=1, latency=3)   # a_1 = b_0 + 1 = 9, b_1 = 12
    14
    """
    latency = check_int(latency, "Memory latency", 1, 1 << 20)
    if beats <= 0:
        return 0
    lengths = bursts(first_beat, beats, burst)
    resp: list[int] = []
    a = last_w = 0
    for j, n in enumerate(lengths):
        a = DMA_ISSUE_CYCLES if j == 0 else a + 1
        if j >= outstanding:
            a = max(a, resp[j - outstanding] + 1)
        last_w += n                                  # data beats 2 .. 2 + beats - 1
        b = max(a, last_w + 1) + latency
        if resp:
            b = max(b, resp[-1] + 1)
        resp.append(b)
    return resp[-1] + 2


def schedule(layers: Sequence[Mapping[str, Any]], *, beats: int, burst: int,
             outstanding: int, latency: int, act_beats: int = 0) -> list[int]:
    """Each descriptor's cycle counter on a memory of fixed ``latency``.

    Parameters
    ----------
    layers : sequence of mapping
        ``Program.layers``: ``cycles`` (without waiting; a store's at latency 1), and
        ``wait``, ``ld_words``, ``ld_src``, ``ld_act`` where a descriptor waits or loads,
        ``st_words``, ``st_dst`` where it stores.
    beats, act_beats : int
        ``m_axi`` beats per weight word and per activation word.
    burst, outstanding : int
        the core's ``ext_burst`` and ``ext_outstanding``.
    latency : int
        the memory's latency L (cycles from an accepted read address to its first beat).

    Returns
    -------
    list of int
        per descriptor: ``cycles`` + the cycles its load check waited (+ a store's time
        beyond its time at latency 1).
    """
    return [count for count, _ in _timeline(layers, beats=beats, burst=burst,
                                            outstanding=outstanding, latency=latency,
                                            act_beats=act_beats)]


def stall_cycles(layers: Sequence[Mapping[str, Any]], *, beats: int, burst: int,
                 outstanding: int, latency: int, act_beats: int = 0) -> int:
    """The cycles the load checks of :func:`schedule`'s descriptors wait in all (the core's
    ``STALL_CYCLES``)."""
    return sum(wait for _, wait in _timeline(layers, beats=beats, burst=burst,
                                             outstanding=outstanding, latency=latency,
                                             act_beats=act_beats))


def _timeline(layers: Sequence[Mapping[str, Any]], *, beats: int, burst: int,
              outstanding: int, latency: int, act_beats: int) -> list[tuple[int, int]]:
    """(counter, wait) of each descriptor."""
    t = 0                     # cycle of the descriptor's read
    free = 0                  # first cycle the DMA is idle
    out = []
    for layer in layers:
        check = t + 1
        words = int(layer.get("ld_words", 0))
        stored = int(layer.get("st_words", 0))
        start = max(check, free) if layer.get("wait") or words or stored else check
        count = int(layer["cycles"]) + start - check
        if words:
            per = act_beats if layer.get("ld_act") else beats
            free = start + load_cycles(int(layer["ld_src"]) * per, words * per,
                                       burst=burst, outstanding=outstanding, latency=latency)
        if stored:
            shape = dict(burst=burst, outstanding=outstanding)
            first = int(layer["st_dst"]) * act_beats
            took = store_cycles(first, stored * act_beats, latency=latency, **shape)
            free = start + took
            count += took - store_cycles(first, stored * act_beats, latency=1, **shape)
        out.append((count, start - check))
        t += count
    return out
