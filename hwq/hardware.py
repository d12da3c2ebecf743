"""Fixed facts of the hwq core, written once: its PE types and their weight formats, and
the pipeline depths of its datapath.

Pure Python, no Amaranth: the RTL (:mod:`hwq.rtl.pe`, :mod:`hwq.rtl.requant`) builds its
pipelines from these depths, and the cycle model (:mod:`hwq.golden.cycles`) derives its
overheads from the same numbers; :class:`hwq.config.CoreConfig`, the register map's PE codes,
the layout compiler and the CLIs read the PE table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACCUMULATE_STAGES", "ACT_FETCH_STAGES", "DMA_COMMIT_CYCLES", "DMA_ISSUE_CYCLES",
           "DOT_STAGES", "FUSED_WRITE_STAGES", "LOAD_CHECK_STAGES", "LOAD_DESCRIPTOR_CYCLES",
           "MAX_STAGES", "PACK_STAGES", "PES",
           "PE_FORMATS", "PE_TYPES", "REQUANT_STAGES", "REQUANT_SUM_LEVELS",
           "WEIGHT_FETCH_STAGES", "PeKind", "pe_for_formats"]


@dataclass(frozen=True)
class PeKind:
    """What one PE type takes.

    Attributes
    ----------
    formats : tuple of str
        weight formats (:mod:`hwq.golden.formats` kinds) its layers may be stored in, the
        one it is exercised with by default first.
    weight_bits : tuple of int
        ``(lo, hi)``: the widest weight code the datapath may be built for
        (:attr:`hwq.config.CoreConfig.weight_bits`).
    """

    formats: tuple[str, ...]
    weight_bits: tuple[int, int]


#: The PE types, in ``CONFIG0.PE`` code order (:data:`hwq.layout.regmap.PE_CODES`).
#: ``shift_add``: POT codes, no multiplier; ``bit_serial``: INT codes one bit-plane per cycle
#: (codebook layers expanded to INT planes at compile time); ``multiply``: INT codes and
#: codebook indices decoded to values on plain multipliers.
PES: dict[str, PeKind] = {
    "shift_add": PeKind(formats=("pot",), weight_bits=(2, 7)),
    "bit_serial": PeKind(formats=("int", "codebook"), weight_bits=(2, 8)),
    "multiply": PeKind(formats=("int", "codebook"), weight_bits=(2, 8)),
}
PE_TYPES: tuple[str, ...] = tuple(PES)
#: Every PE type with every weight format it takes: ``("shift_add", "pot"), ...``.
PE_FORMATS: tuple[tuple[str, str], ...] = tuple(
    (pe, fmt) for pe, kind in PES.items() for fmt in kind.formats)


def pe_for_formats(kinds: set[str] | frozenset[str]) -> str | None:
    """The first PE type (in :data:`PE_TYPES` order) that takes every format in ``kinds``.

    >>> pe_for_formats({"pot"}), pe_for_formats({"int", "codebook"})
    ('shift_add', 'bit_serial')
    >>> print(pe_for_formats({"pot", "int"}))
    None
    """
    return next((pe for pe, kind in PES.items() if set(kinds) <= set(kind.formats)), None)


# ----------------------------------------------------------------------------- pipeline
#: Registers from a MAC array input beat to its dot products (every PE type,
#: :class:`hwq.rtl.pe.MacArray`).
DOT_STAGES = 5
#: The accumulator after the dot products.
ACCUMULATE_STAGES = 1
#: Adder levels summing requant's partial products: ``acc_bits <= 48`` gives a ``t`` of up
#: to 49 bits, 3 chunks, times 2 chunks of ``M`` = 6 products (:mod:`hwq.rtl.requant`).
REQUANT_SUM_LEVELS = 3
#: Registers from a requant input beat to its output: ``acc + bias``, the DSP products'
#: input and output registers and one more, the sum levels, two shift steps, the rounding
#: and the output register.
REQUANT_STAGES = 8 + REQUANT_SUM_LEVELS
#: Weight fetch (address, memory read) and activation fetch (address, memory read, padding
#: and parameter select) in cycles (:mod:`hwq.rtl.fetch`).
WEIGHT_FETCH_STAGES = 2
ACT_FETCH_STAGES = 3
#: A core with ``pack`` (:attr:`hwq.config.CoreConfig.pack`): the activation fetch's merge
#: of its two words (the second shifted by ``split`` lanes) in a stage of its own after the
#: padding select, so no lane shifter follows a block RAM output in the same cycle.
PACK_STAGES = 1
#: The max pool's compare-and-hold register (:mod:`hwq.rtl.maxpool`).
MAX_STAGES = 1
#: The write-back's register between a fused max pool's comparison and the activation
#: memory (:mod:`hwq.rtl.writeback`): a matmul descriptor with ``fuse`` takes this many
#: cycles more.
FUSED_WRITE_STAGES = 1

# ----------------------------------------------------------------------------- external memory
#: A core with the ``m_axi`` port spends one more sequencer cycle per descriptor: the
#: descriptor's load check (wait for the load in flight, start its own load).
LOAD_CHECK_STAGES = 1
#: Cycles of a load-only descriptor (kind ``"load"``) when it does not wait: its read and
#: its load check.
LOAD_DESCRIPTOR_CYCLES = 1 + LOAD_CHECK_STAGES
#: From the cycle a descriptor starts a load to the first read address the DMA offers.
DMA_ISSUE_CYCLES = 1
#: From the last read beat to the cycle the DMA is idle again: the word's write.
DMA_COMMIT_CYCLES = 2
