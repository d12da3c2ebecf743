"""The weight loader of a core with external memory: an AXI4 read master (``m_axi``) that
copies weight micro-ops from the external image into the weight buffer.

A load (``start`` with ``src``, ``dst``, ``length`` in weight words) reads
``length * beats`` beats from byte ``base + src * beats * bytes`` on (``beats`` per word,
:attr:`hwq.layout.words.CoreWords.ext_beats`; ``bytes`` per beat) in INCR bursts aligned to
``ext_burst`` beats, with at most ``ext_outstanding`` bursts in flight, and writes each
word to the weight memory the cycle after its last beat, at ``dst``, ``dst + 1``, ... The
read address channel's payload only changes on a handshake (AXI4's rule) and its valid
never depends on ``arready``; ``rready`` is always 1 (a beat is written or buffered at
once). :mod:`hwq.golden.memory` models the timing exactly for a fixed-latency memory.

Verilog ports ``m_axi__araddr`` etc.: cocotbext-axi finds them with
``AxiReadBus.from_prefix(dut, "m_axi_")``. Read channels only: the core never writes.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.hardware import DMA_COMMIT_CYCLES, DMA_ISSUE_CYCLES
from hwq.layout.words import EXT_SRC_BITS, core_words

__all__ = ["EXT_ADDR_BITS", "WeightDma", "axi4_read_signature"]

#: Address bits of the ``m_axi`` port.
EXT_ADDR_BITS = 32

# the RTL below has these latencies (one register between start and the first address;
# the word's write register after its last beat)
assert DMA_ISSUE_CYCLES == 1 and DMA_COMMIT_CYCLES == 2


def axi4_read_signature(data_bits: int, addr_bits: int = EXT_ADDR_BITS) -> wiring.Signature:
    """The read channels of AXI4 from the master's side (``Out`` = driven by the master).
    One ID bit (``arid`` always 0): the reads are in order."""
    return wiring.Signature({
        "arid": Out(1), "araddr": Out(addr_bits), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
        "rid": In(1), "rdata": In(data_bits), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })


class WeightDma(wiring.Component):
    """Loads weight words from ``m_axi`` into the weight memory.

    Ports: ``start`` (In: take ``src``, ``dst``, ``length``, ``length > 0``, only while not
    ``busy``), ``base`` (In: the image's byte address, stable while busy), ``busy`` (Out),
    ``wr_addr``/``wr_data``/``wr_en`` (Out: the weight memory's write port), ``beat`` (Out:
    a read beat arrived), ``error`` (Out: a beat's response was not OKAY), ``m_axi``.
    """

    def __init__(self, *, config: CoreConfig) -> None:
        if not isinstance(config, CoreConfig) or not config.external:
            raise ValueError(f"WeightDma needs a CoreConfig with ext_bits, not {config!r}")
        self.config = config
        self.words = w = core_words(config)
        self.beats = w.ext_beats
        super().__init__({
            "start": In(1),
            "src": In(EXT_SRC_BITS),
            "dst": In(w.weight_addr_bits),
            "length": In(w.desc["ld_len"].width),
            "base": In(EXT_ADDR_BITS),
            "busy": Out(1),
            "wr_addr": Out(w.weight_addr_bits),
            "wr_data": Out(w.weight.width),
            "wr_en": Out(1),
            "beat": Out(1),
            "error": Out(1),
            "m_axi": Out(axi4_read_signature(config.ext_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, beats = self.config, self.beats
        bus = self.m_axi
        nbytes = cfg.ext_bits // 8
        burst, most = cfg.ext_burst, cfg.ext_outstanding
        count_bits = EXT_SRC_BITS + beats.bit_length() + 1
        ar_beat = Signal(count_bits)          # next beat to ask for (from the image start)
        ar_left = Signal(count_bits)          # beats not yet asked for
        r_left = Signal(count_bits)           # beats not yet received
        inflight = Signal(range(most + 1))
        m.d.comb += self.busy.eq((r_left != 0) | self.wr_en)

        # read addresses: bursts up to the next multiple of `burst` beats
        to_edge = burst - (ar_beat[:max(1, (burst - 1).bit_length())] if burst > 1 else 0)
        n = Signal(range(burst + 1))
        m.d.comb += n.eq(Mux(ar_left < to_edge, ar_left, to_edge))
        ask = Signal()
        m.d.comb += [
            ask.eq((ar_left != 0) & (inflight != most)),
            bus.arvalid.eq(ask),
            bus.araddr.eq(self.base + (ar_beat << (nbytes.bit_length() - 1))),
            bus.arlen.eq(n - 1),
            bus.arsize.eq(nbytes.bit_length() - 1),
            bus.arburst.eq(1),                # INCR
            bus.rready.eq(1),
        ]
        asked = ask & bus.arready
        got = bus.rvalid                      # rready is always 1
        m.d.comb += [self.beat.eq(got), self.error.eq(got & (bus.rresp != 0))]
        done_burst = got & bus.rlast
        with m.If(asked & ~done_burst):
            m.d.sync += inflight.eq(inflight + 1)
        with m.Elif(~asked & done_burst):
            m.d.sync += inflight.eq(inflight - 1)
        with m.If(self.start):
            m.d.sync += [ar_beat.eq(self.src * beats), ar_left.eq(self.length * beats),
                         r_left.eq(self.length * beats), self.wr_addr.eq(self.dst)]
        with m.Elif(asked):
            m.d.sync += [ar_beat.eq(ar_beat + n), ar_left.eq(ar_left - n)]

        # read data: beats of a word collected LSB first; the word written after its last
        part = Signal(range(beats))
        held = [Signal(cfg.ext_bits, name=f"held{i}") for i in range(beats - 1)]
        word = Cat(*held, bus.rdata)
        m.d.sync += self.wr_en.eq(0)
        with m.If(self.wr_en):
            m.d.sync += self.wr_addr.eq(self.wr_addr + 1)
        with m.If(got):
            m.d.sync += r_left.eq(r_left - 1)
            if beats == 1:
                m.d.sync += [self.wr_en.eq(1), self.wr_data.eq(word[:len(self.wr_data)])]
            else:
                with m.If(part == beats - 1):
                    m.d.sync += [part.eq(0), self.wr_en.eq(1),
                                 self.wr_data.eq(word[:len(self.wr_data)])]
                with m.Else():
                    m.d.sync += part.eq(part + 1)
                    for i, h in enumerate(held):
                        with m.If(part == i):
                            m.d.sync += h.eq(bus.rdata)
        return m
