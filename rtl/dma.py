"""The DMA of a core with external memory: an AXI4 master (``m_axi``) that loads weight
micro-ops into the weight buffer and activation words into the activation memory, and stores
activation words back.

A load (``start`` with ``src``, ``dst``, ``length`` in words, ``to_act`` choosing the
memory) reads ``length * beats`` beats from byte ``base + src * beats * bytes`` on
(``beats`` per word of that memory: :attr:`hwq.layout.words.CoreWords.ext_beats` or
``ext_act_beats``; ``bytes`` per beat) in INCR bursts aligned to ``ext_burst`` beats, with
at most ``ext_outstanding`` bursts in flight, and writes each word to the memory the cycle
after its last beat, at ``dst``, ``dst + 1``, ... ``rready`` is always 1 (a beat is
written or buffered at once).

A store (``st_start`` with ``st_src``, ``st_dst``, ``st_len``) reads activation words from
``st_src`` on through ``rd_addr``/``rd_en``/``rd_data`` and writes them, ``ext_act_beats``
beats each, from external activation word ``st_dst`` on: write addresses in the same aligned
INCR bursts (at most ``ext_outstanding`` awaiting their response), write data one beat per
cycle from the second cycle after ``st_start`` while ``wready``, independent of the address
channel (AXI4 lets a master offer either first), ``bready`` always 1. The store is over when
every burst's response has arrived.

Address and data payloads only change on a handshake (AXI4's rule) and no valid depends on
a ready. :mod:`hwq.golden.memory` models the timing exactly for a fixed-latency memory.
Verilog ports ``m_axi__araddr`` etc.: cocotbext-axi finds them with
``AxiBus.from_prefix(dut, "m_axi_")``.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.hardware import DMA_COMMIT_CYCLES, DMA_ISSUE_CYCLES
from hwq.layout.words import EXT_SRC_BITS, core_words

__all__ = ["EXT_ADDR_BITS", "Dma", "axi4_read_signature", "axi4_signature"]

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


def axi4_signature(data_bits: int, addr_bits: int = EXT_ADDR_BITS) -> wiring.Signature:
    """AXI4 read and write channels from the master's side (one ID bit, always 0)."""
    members = dict(axi4_read_signature(data_bits, addr_bits).members)
    members.update({
        "awid": Out(1), "awaddr": Out(addr_bits), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(1), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    })
    return wiring.Signature(members)


def _burst_len(beat: Signal, left: Signal, burst: int) -> Mux:
    """Beats of the next INCR burst from ``beat``: up to the next multiple of ``burst``."""
    to_edge = burst - (beat[:max(1, (burst - 1).bit_length())] if burst > 1 else 0)
    return Mux(left < to_edge, left, to_edge)


class Dma(wiring.Component):
    """Loads weight or activation words from ``m_axi``, stores activation words to it.

    Ports: ``start`` (In: take ``src``, ``dst``, ``length``, ``to_act``; ``length > 0``,
    only while not ``busy``), ``st_start`` (In: take ``st_src``, ``st_dst``, ``st_len``;
    ``st_len > 0``, only while not ``busy``), ``base`` (In: the image's byte address,
    stable while busy), ``busy`` (Out), ``storing`` (Out: a store owns the activation read
    port), ``wr_addr``/``wr_data``/``wr_en``/``wr_act`` (Out: the write port of the weight
    memory, or with ``wr_act`` of the activation memory), ``rd_addr``/``rd_en``/``rd_data``
    (the activation memory's read port while ``storing``), ``beat`` (Out: a read beat
    arrived or a write beat left), ``error`` (Out: a response was not OKAY), ``m_axi``.
    """

    def __init__(self, *, config: CoreConfig) -> None:
        if not isinstance(config, CoreConfig) or not config.external:
            raise ValueError(f"Dma needs a CoreConfig with ext_bits, not {config!r}")
        self.config = config
        self.words = w = core_words(config)
        super().__init__({
            "start": In(1),
            "to_act": In(1),
            "src": In(EXT_SRC_BITS),
            "dst": In(w.desc["ld_dst"].width),
            "length": In(w.desc["ld_len"].width),
            "st_start": In(1),
            "st_src": In(w.act_addr_bits),
            "st_dst": In(EXT_SRC_BITS),
            "st_len": In(w.desc["st_len"].width),
            "base": In(EXT_ADDR_BITS),
            "busy": Out(1),
            "storing": Out(1),
            "wr_addr": Out(w.desc["ld_dst"].width),
            "wr_data": Out(max(w.weight.width, w.act.width)),
            "wr_en": Out(1),
            "wr_act": Out(1),
            "rd_addr": Out(w.act_addr_bits),
            "rd_en": Out(1),
            "rd_data": In(w.act.width),
            "beat": Out(1),
            "error": Out(1),
            "m_axi": Out(axi4_signature(config.ext_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, w = self.config, self.words
        bus = self.m_axi
        nbytes = cfg.ext_bits // 8
        size = nbytes.bit_length() - 1
        burst, most = cfg.ext_burst, cfg.ext_outstanding
        wb, ab = w.ext_beats, w.ext_act_beats
        count_bits = EXT_SRC_BITS + max(wb, ab).bit_length() + 1

        # --- loads: the read channels ----------------------------------------------------
        ar_beat = Signal(count_bits)          # next beat to ask for (from the image start)
        ar_left = Signal(count_bits)          # beats not yet asked for
        r_left = Signal(count_bits)           # beats not yet received
        inflight = Signal(range(most + 1))
        n = Signal(range(burst + 1))
        m.d.comb += n.eq(_burst_len(ar_beat, ar_left, burst))
        ask = Signal()
        m.d.comb += [
            ask.eq((ar_left != 0) & (inflight != most)),
            bus.arvalid.eq(ask),
            bus.araddr.eq(self.base + (ar_beat << size)),
            bus.arlen.eq(n - 1),
            bus.arsize.eq(size),
            bus.arburst.eq(1),                # INCR
            bus.rready.eq(1),
        ]
        asked = ask & bus.arready
        got = bus.rvalid                      # rready is always 1
        done_burst = got & bus.rlast
        with m.If(asked & ~done_burst):
            m.d.sync += inflight.eq(inflight + 1)
        with m.Elif(~asked & done_burst):
            m.d.sync += inflight.eq(inflight - 1)
        with m.If(self.start):
            beats = Mux(self.to_act, ab, wb)
            m.d.sync += [ar_beat.eq(Mux(self.to_act, self.src * ab, self.src * wb)),
                         ar_left.eq(self.length * beats), r_left.eq(self.length * beats),
                         self.wr_addr.eq(self.dst), self.wr_act.eq(self.to_act)]
        with m.Elif(asked):
            m.d.sync += [ar_beat.eq(ar_beat + n), ar_left.eq(ar_left - n)]

        # read data: beats of a word collected LSB first; the word written after its last
        most_beats = max(wb, ab)
        part = Signal(range(most_beats))
        held = [Signal(cfg.ext_bits, name=f"held{i}") for i in range(most_beats - 1)]
        last_part = Mux(self.wr_act, part == ab - 1, part == wb - 1)
        m.d.sync += self.wr_en.eq(0)
        with m.If(self.wr_en):
            m.d.sync += self.wr_addr.eq(self.wr_addr + 1)
        with m.If(got):
            m.d.sync += r_left.eq(r_left - 1)
            with m.If(last_part):
                # the word: the held beats, then this one (a shorter word ends earlier)
                words = {k: Cat(*held[:k - 1], bus.rdata) for k in {wb, ab}}
                m.d.sync += [part.eq(0), self.wr_en.eq(1)]
                with m.If(self.wr_act):
                    m.d.sync += self.wr_data.eq(words[ab][:w.act.width])
                with m.Else():
                    m.d.sync += self.wr_data.eq(words[wb][:w.weight.width])
            with m.Else():
                m.d.sync += part.eq(part + 1)
                for i, h in enumerate(held):
                    with m.If(part == i):
                        m.d.sync += h.eq(bus.rdata)

        # --- stores: the write channels --------------------------------------------------
        aw_beat = Signal(count_bits)
        aw_left = Signal(count_bits)
        w_beat = Signal(count_bits)           # next data beat (from the image start)
        w_left = Signal(count_bits)
        b_wait = Signal(range(most + 1))      # bursts asked for, response not yet in
        rd_left = Signal(self.st_len.shape())
        have = Signal()                       # rd_data holds the word being sent
        wpart = Signal(range(max(1, ab)))
        awn = Signal(range(burst + 1))
        m.d.comb += awn.eq(_burst_len(aw_beat, aw_left, burst))
        aw_ask = Signal()
        m.d.comb += [
            aw_ask.eq((aw_left != 0) & (b_wait != most)),
            bus.awvalid.eq(aw_ask),
            bus.awaddr.eq(self.base + (aw_beat << size)),
            bus.awlen.eq(awn - 1),
            bus.awsize.eq(size),
            bus.awburst.eq(1),
            bus.bready.eq(1),
            bus.wstrb.eq((1 << nbytes) - 1),
        ]
        aw_taken = aw_ask & bus.awready
        b_got = bus.bvalid                    # bready is always 1
        with m.If(aw_taken & ~b_got):
            m.d.sync += b_wait.eq(b_wait + 1)
        with m.Elif(~aw_taken & b_got):
            m.d.sync += b_wait.eq(b_wait - 1)
        with m.If(aw_taken):
            m.d.sync += [aw_beat.eq(aw_beat + awn), aw_left.eq(aw_left - awn)]

        # write data: the read port's output is held while it is not enabled, so a word
        # stays on rd_data for its beats; the next word is read as its last beat goes
        sent = have & bus.wready
        word_sent = sent & (wpart == ab - 1)
        advance = self.storing & (~have | word_sent)
        pad = ab * cfg.ext_bits - w.act.width
        padded = Cat(self.rd_data, C(0, pad)) if pad else self.rd_data
        beat_data = padded.word_select(wpart, cfg.ext_bits) if ab > 1 else padded
        burst_end = (w_beat[:(burst - 1).bit_length()] == burst - 1) if burst > 1 else 1
        m.d.comb += [
            bus.wvalid.eq(have),
            bus.wdata.eq(beat_data),
            bus.wlast.eq((w_left == 1) | burst_end),
            self.rd_en.eq(advance),
        ]
        with m.If(self.st_start):
            m.d.sync += [aw_beat.eq(self.st_dst * ab), aw_left.eq(self.st_len * ab),
                         w_beat.eq(self.st_dst * ab), w_left.eq(self.st_len * ab),
                         self.rd_addr.eq(self.st_src), rd_left.eq(self.st_len),
                         self.storing.eq(1), wpart.eq(0)]
        with m.Else():
            with m.If(sent):
                m.d.sync += [w_beat.eq(w_beat + 1), w_left.eq(w_left - 1),
                             wpart.eq(Mux(wpart == ab - 1, 0, wpart + 1))]
            with m.If(advance):
                m.d.sync += have.eq(rd_left != 0)
                with m.If(rd_left != 0):
                    m.d.sync += [self.rd_addr.eq(self.rd_addr + 1), rd_left.eq(rd_left - 1)]
            with m.If(self.storing & (aw_left == 0) & (b_wait == 0) & (w_left == 0)):
                m.d.sync += self.storing.eq(0)

        m.d.comb += [
            self.busy.eq((r_left != 0) | self.wr_en | self.storing),
            self.beat.eq(got | sent),
            self.error.eq((got & (bus.rresp != 0)) | (b_got & (bus.bresp != 0))),
        ]
        return m
