"""Core configuration: one object drives the RTL, layout compiler, cycle model and host."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np

from hwq.golden._checks import check_int
from hwq.hardware import PE_TYPES, PES

#: How the RTL builds its multipliers (:attr:`CoreConfig.dsp`).
DSP_KINDS: tuple[str, ...] = ("inferred", "ecp5")


@dataclass(frozen=True, kw_only=True)
class CoreConfig:
    """Parameters of one accelerator core.

    Parameters
    ----------
    pe : {"shift_add", "bit_serial", "multiply"}
        ``shift_add`` takes POT weights (no multiplier); ``bit_serial`` INT/CODEBOOK weights,
        one bit-plane per cycle; ``multiply`` INT/CODEBOOK weights on plain multipliers.
    lanes : int
        output channels computed in parallel (P), 1..256.
    simd : int
        inputs per lane per cycle (S), 1..256.
    act_bits : int
        activation width, 2..16 (signed).
    weight_bits : int
        widest weight code the datapath takes: POT 2..7 for shift_add, INT 2..8 otherwise.
    acc_bits : int
        accumulator width, 8..48; a layer whose bound needs more is refused.
    table_bits : int
        width of CODEBOOK table entries the datapath takes, 2..8 (``multiply`` decodes
        codebook indices through the table on the fly; ``bit_serial`` gets codebook layers
        expanded to INT bit-planes at compile time; ``shift_add`` takes no codebook).
    act_depth, weight_depth, param_depth : int
        words in the activation memory (both ping-pong regions), the weight memory and
        the parameter memory.
    desc_depth : int
        layer descriptors the core holds (the most layers one program may run), 2..1024.
    dsp : {"inferred", "ecp5"}
        how the multipliers (multiply PEs, requant) are built. ``inferred``: Amaranth ``*``
        with fabric registers at both ends; any tool maps it (Yosys: DSP blocks or LUTs).
        ``ecp5``: one MULT18X18D block each, with the block's own input and output registers
        (same latency, no routing between the registers and the block): for ECP5 only; the
        simulator uses hwq's Verilog model of that block (:mod:`hwq.rtl.dsp`). Not part of
        :meth:`fingerprint`: a program runs the same on either.
    ext_bits : {0, 32, 64, 128}
        data width of the AXI4 master port ``m_axi`` through which the core reads weight
        tiles from external memory; 0 (default): no port, every weight on chip.
    ext_burst : int
        most beats per AXI4 read burst (a power of two, 1..256). Bursts are aligned to
        ``ext_burst`` beats from ``EXT_BASE``, itself so aligned; a burst is at most
        256 x 16 bytes, so none crosses a 4 KB boundary (AXI4's rule).
    ext_outstanding : int
        most read bursts in flight, 1..16.
    pool_words : int
        words of the fused-pool buffer, 0..1024: the running maximum of one output position's
        ``out_ct`` words when a max pool runs in the write-back of the conv before it
        (:mod:`hwq.rtl.writeback`). 0 (default): no buffer; every max pool is a pass of its
        own. :func:`hwq.layout.compiler.core_config` sizes it to the program.
    pack : bool
        K packing (needs ``simd >= 2``): a second read port on the activation memory and a
        weight micro-op that reads two activation words, the second shifted up by ``split``
        lanes (:mod:`hwq.rtl.fetch`), so that the partial last channel tiles of two kernel
        taps share one micro-op (:mod:`hwq.layout.kpack`). Costs a second copy of the
        activation memory's block RAMs and one activation fetch stage. False (default): the
        core, its Verilog, fingerprint and programs are those without packing.
    depthwise : bool
        the depthwise mode of the MAC array (needs ``pack``, ``lanes == simd >= 8``, and on
        ``multiply`` ``dsp="inferred"``): a depthwise conv maps channels to lanes and kernel
        taps to SIMD through a window register file in the activation fetch
        (:mod:`hwq.layout.dwmode`). False (default): the core, its Verilog, fingerprint and
        programs are those without it.

    ``lanes`` and ``simd`` must divide one another (``max % min == 0``) so that a group of
    ``lanes`` outputs fills whole activation words or a whole fraction of one. Integer fields
    take any integer type (NumPy's too) and hold Python ints.
    """

    pe: str
    lanes: int = 8
    simd: int = 8
    act_bits: int = 8
    weight_bits: int = 4
    acc_bits: int = 32
    table_bits: int = 8
    act_depth: int = 4096
    weight_depth: int = 16384
    param_depth: int = 1024
    desc_depth: int = 32
    dsp: str = "inferred"
    ext_bits: int = 0
    ext_burst: int = 16
    ext_outstanding: int = 4
    pool_words: int = 0
    pack: bool = False
    depthwise: bool = False

    #: Range of ``weight_bits`` per PE type (:data:`hwq.hardware.PES`).
    WEIGHT_BITS: ClassVar[dict[str, tuple[int, int]]] = {
        pe: kind.weight_bits for pe, kind in PES.items()}
    #: Integer fields: what a message calls them and their range (``weight_bits``: per PE,
    #: :attr:`WEIGHT_BITS`).
    INT_FIELDS: ClassVar[dict[str, tuple[str, int, int]]] = {
        "lanes": ("Lanes", 1, 256),
        "simd": ("SIMD width", 1, 256),
        "act_bits": ("Activation bit width", 2, 16),
        "weight_bits": ("Weight bit width", 2, 8),
        "acc_bits": ("Accumulator bit width", 8, 48),
        "table_bits": ("Codebook table entry bit width", 2, 8),
        "act_depth": ("Activation buffer depth", 16, 1 << 20),
        "weight_depth": ("Weight memory depth", 16, 1 << 22),
        "param_depth": ("Parameter memory depth", 16, 1 << 20),
        "desc_depth": ("Descriptor memory depth", 2, 1024),
        "ext_bits": ("External memory port width (0: none)", 0, 128),
        "ext_burst": ("External memory burst length", 1, 256),
        "ext_outstanding": ("External memory outstanding reads", 1, 16),
        "pool_words": ("Fused pool buffer depth (0: none)", 0, 1024),
    }
    #: Widths of the ``m_axi`` data bus (0: no external memory port).
    EXT_BITS: ClassVar[tuple[int, ...]] = (0, 32, 64, 128)

    def int_range(self, name: str) -> tuple[int, int]:
        """Allowed range of integer field ``name`` (``weight_bits`` depends on the PE)."""
        if name == "weight_bits" and self.pe in PE_TYPES:
            return self.WEIGHT_BITS[self.pe]
        return self.INT_FIELDS[name][1:]

    def __post_init__(self) -> None:
        if self.pe not in PE_TYPES:
            raise ValueError(f"PE type must be one of {', '.join(PE_TYPES)}, not {self.pe!r}")
        object.__setattr__(self, "pe", str(self.pe))
        for name, (label, _, _) in self.INT_FIELDS.items():
            if name == "weight_bits":
                label = f"Weight bit width for the {self.pe} PE"
            # NumPy integers become Python ints (JSON, the fingerprint)
            object.__setattr__(self, name, check_int(getattr(self, name), label,
                                                     *self.int_range(name)))
        if self.dsp not in DSP_KINDS:
            raise ValueError(f"DSP kind must be one of {', '.join(DSP_KINDS)}, not {self.dsp!r}")
        object.__setattr__(self, "dsp", str(self.dsp))
        if self.ext_bits not in self.EXT_BITS:
            raise ValueError("External memory port width must be one of "
                             f"{', '.join(map(str, self.EXT_BITS))} bits, not {self.ext_bits!r}")
        if self.ext_burst & (self.ext_burst - 1):
            raise ValueError("External memory burst length must be a power of two, not "
                             f"{self.ext_burst!r}")
        if not isinstance(self.pack, bool | np.bool_):
            raise ValueError(f"K packing (pack) must be True or False, not {self.pack!r}")
        object.__setattr__(self, "pack", bool(self.pack))
        if self.pack and self.simd < 2:
            raise ValueError("K packing (pack) needs a SIMD width of at least 2, not "
                             f"simd={self.simd!r}")
        if not isinstance(self.depthwise, bool | np.bool_):
            raise ValueError("Depthwise mode (depthwise) must be True or False, not "
                             f"{self.depthwise!r}")
        object.__setattr__(self, "depthwise", bool(self.depthwise))
        if self.depthwise and not self.pack:
            raise ValueError("Depthwise mode (depthwise) needs the second activation read port "
                             "of K packing (pack=True), not pack=False")
        if self.depthwise and not self.lanes == self.simd >= 8:
            raise ValueError("Depthwise mode (depthwise) needs lanes == simd >= 8, not "
                             f"lanes={self.lanes!r}, simd={self.simd!r}")
        if self.depthwise and self.pe == "multiply" and self.dsp != "inferred":
            raise ValueError("Depthwise mode (depthwise) on the multiply PE needs "
                             f"dsp='inferred' (ECP5 lanes share DSP blocks and one activation "
                             f"word), not dsp={self.dsp!r}")
        if max(self.lanes, self.simd) % min(self.lanes, self.simd):
            raise ValueError(
                "Lanes and SIMD width must divide one another, not "
                f"lanes={self.lanes!r}, simd={self.simd!r}"
            )

    @property
    def formats(self) -> tuple[str, ...]:
        """Weight formats this core runs (:data:`hwq.hardware.PES`): POT on shift_add, INT
        and CODEBOOK otherwise."""
        return PES[self.pe].formats

    @property
    def depths(self) -> dict[str, int]:
        """Words of each memory, by the bulk path's memory names (``desc``, ``weight``,
        ``param``, ``act``; :data:`hwq.layout.words.MEMORY_IDS`)."""
        return {"desc": self.desc_depth, "weight": self.weight_depth,
                "param": self.param_depth, "act": self.act_depth}

    @property
    def external(self) -> bool:
        """Whether the core has the ``m_axi`` port (weights may live in external memory)."""
        return self.ext_bits > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoreConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown core config field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**d)

    def fingerprint(self) -> str:
        """Short stable hash; a Program built for one config refuses to run on another.

        ``dsp`` is left out: it changes how the multipliers are mapped, not what the core
        computes or how many cycles it takes.
        """
        d = self.to_dict()
        del d["dsp"]
        if not self.ext_bits:   # the burst shape of a core without the port changes nothing
            for name in ("ext_bits", "ext_burst", "ext_outstanding"):
                del d[name]
        if not self.pool_words:  # cores without the buffer keep their fingerprints
            del d["pool_words"]
        if not self.pack:        # cores without packing keep their fingerprints
            del d["pack"]
        if not self.depthwise:   # cores without the depthwise mode keep their fingerprints
            del d["depthwise"]
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
