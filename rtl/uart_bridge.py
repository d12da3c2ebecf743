"""UART → AXI4-Lite bridge: the host link of a board (protocol: :mod:`hwq.layout.link`).

:class:`UartBridge` turns request frames arriving on a byte stream into AXI4-Lite
transactions on its master port ``m_axil`` and answers each with a reply frame; its CRC
units are ``amaranth.lib.crc`` processors with the protocol's parameters.
:class:`UartHostLink` adds the UART pins (:mod:`hwq.rtl.uart`).

A write burst goes into a buffer of ``max_burst`` 32-bit words (one block RAM at 512 words)
and is executed only once the frame's CRC checks; a read streams each word into the reply as
the core returns it. Frames that stop arriving for ``FRAME_TIMEOUT_BITS`` bit times are
answered ``FRAME_TIMEOUT``. Cost per command besides the bytes on the line: a few cycles.
"""


import operator

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import crc, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hwq.layout import link
from hwq.layout.link import Op, Status
from hwq.layout.regmap import ADDR_WIDTH
from hwq.rtl.axil import axil_signature
from hwq.rtl.uart import UartRx, UartTx, check_divider

__all__ = ["UartBridge", "UartHostLink", "crc_algorithm"]


def crc_algorithm() -> crc.Algorithm:
    """The link's CRC (:data:`hwq.layout.link.CRC_POLY`, ``CRC_INIT``) as an Amaranth algorithm."""
    return crc.Algorithm(crc_width=16, polynomial=link.CRC_POLY, initial_crc=link.CRC_INIT,
                         reflect_input=False, reflect_output=False, xor_output=0)


def _check_burst(max_burst: object) -> int:
    try:
        n = operator.index(max_burst)
    except TypeError:
        raise TypeError(f"Max burst must be an integer, not {max_burst!r}") from None
    if not 1 <= n <= link.MAX_BURST or n & (n - 1):
        raise ValueError(f"Max burst must be a power of two in 1..{link.MAX_BURST} words, "
                         f"not {n}")
    return n


class UartBridge(wiring.Component):
    """Link frames on byte streams ``i`` (requests) / ``o`` (replies) → AXI4-Lite ``m_axil``.

    Parameters
    ----------
    divider : int
        clock cycles per UART bit (sets the frame timeout; reported by ``HELLO``).
    max_burst : int
        words a write burst may carry (a power of two, 1..256).
    """

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    m_axil: Out(axil_signature())

    def __init__(self, *, divider: int, max_burst: int = 64) -> None:
        self.divider = check_divider(divider)
        self.max_burst = _check_burst(max_burst)
        self.timeout_cycles = link.FRAME_TIMEOUT_BITS * self.divider
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        bus = self.m_axil
        algo = crc_algorithm()
        m.submodules.crc_rx = crc_rx = algo(data_width=8).create()
        m.submodules.crc_tx = crc_tx = algo(data_width=8).create()
        m.submodules.buf = buf = memory.Memory(shape=32, depth=self.max_burst, init=[])
        wr, rd = buf.write_port(), buf.read_port()

        op = Signal(8)
        seq = Signal(8)
        addr = Signal(8 * link.ADDR_BYTES)
        last = Signal(8)               # beats - 1 of the command (LEN)
        beat = Signal(9)
        nbyte = Signal(range(max(link.ADDR_BYTES, 4)))
        word = Signal(32)
        status = Signal(8)
        resp = Signal(2)
        last_seq = Signal(8)
        last_valid = Signal()
        idle = Signal(range(self.timeout_cycles + 1))
        take = Signal()                # a request byte is accepted this cycle
        sent = Signal()                # a reply byte is accepted this cycle
        byte = self.i.payload
        is_write = op[0]
        incr = op[1]
        known = op <= Op.HELLO
        m.d.comb += [take.eq(self.i.valid & self.i.ready), sent.eq(self.o.valid & self.o.ready),
                     crc_rx.data.eq(byte), crc_tx.data.eq(self.o.payload),
                     wr.addr.eq(beat), wr.data.eq(Cat(word[8:], byte)),
                     rd.addr.eq(beat), bus.wstrb.eq(0xF),
                     bus.awaddr.eq(addr[:ADDR_WIDTH]), bus.araddr.eq(addr[:ADDR_WIDTH]),
                     bus.wdata.eq(rd.data)]
        # bytes that arrive while the bridge executes or replies are dropped (a host waits for
        # the reply; stray bytes of a damaged frame must not stall the UART)
        m.d.comb += self.i.ready.eq(1)

        def receive(m):
            """Accept a request byte into the CRC; abandon the frame after the timeout."""
            m.d.comb += crc_rx.valid.eq(take)
            with m.If(take):
                m.d.sync += idle.eq(0)
            with m.Elif(idle == self.timeout_cycles):
                m.d.sync += status.eq(Status.FRAME_TIMEOUT)
                m.next = "REPLY_SYNC"
            with m.Else():
                m.d.sync += idle.eq(idle + 1)

        def send(m, value, nxt, *, checked=True):
            m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(value)]
            if checked:
                m.d.comb += crc_tx.valid.eq(sent)
            with m.If(sent):
                m.next = nxt

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += [crc_rx.start.eq(1),
                             crc_rx.valid.eq(take & (byte == link.SYNC_REQUEST))]
                m.d.sync += [idle.eq(0), nbyte.eq(0), beat.eq(0), resp.eq(0),
                             status.eq(Status.OK)]
                with m.If(take & (byte == link.SYNC_REQUEST)):
                    m.next = "OP"
            with m.State("OP"):
                receive(m)
                with m.If(take):
                    m.d.sync += op.eq(byte)
                    m.next = "SEQ"
            with m.State("SEQ"):
                receive(m)
                with m.If(take):
                    m.d.sync += seq.eq(byte)
                    m.next = "ADDR"
            with m.State("ADDR"):
                receive(m)
                with m.If(take):
                    m.d.sync += [addr.eq(Cat(addr[8:], byte)), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == link.ADDR_BYTES - 1):
                        m.d.sync += nbyte.eq(0)
                        m.next = "LEN"
            with m.State("LEN"):
                receive(m)
                with m.If(take):
                    m.d.sync += last.eq(byte)
                    with m.If(is_write):
                        m.next = "DATA"
                    with m.Else():
                        m.next = "CRC_HI"
            with m.State("DATA"):
                receive(m)
                with m.If(take):
                    m.d.sync += [word.eq(Cat(word[8:], byte)), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == 3):
                        m.d.comb += wr.en.eq(beat < self.max_burst)
                        m.d.sync += [nbyte.eq(0), beat.eq(beat + 1)]
                        with m.If(beat == last):
                            m.next = "CRC_HI"
            with m.State("CRC_HI"):
                receive(m)
                with m.If(take):
                    m.next = "CRC_LO"
            with m.State("CRC_LO"):
                receive(m)
                with m.If(take):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [beat.eq(0), nbyte.eq(0)]
                with m.If(~crc_rx.match_detected):
                    m.d.sync += status.eq(Status.BAD_CRC)
                    m.next = "REPLY_SYNC"
                with m.Elif(~known):
                    m.d.sync += status.eq(Status.BAD_OP)
                    m.next = "REPLY_SYNC"
                with m.Elif(last >= self.max_burst):
                    m.d.sync += status.eq(Status.BAD_LEN)
                    m.next = "REPLY_SYNC"
                with m.Elif(op == Op.HELLO):
                    m.d.sync += [last_valid.eq(0), last.eq(0),
                                 word.eq(link.hello_word(max_burst=self.max_burst,
                                                         divider=self.divider))]
                    m.next = "REPLY_SYNC"
                with m.Elif(is_write & last_valid & (seq == last_seq)):
                    m.next = "REPLY_SYNC"      # a repeated write: already done
                with m.Else():
                    m.d.sync += [last_seq.eq(seq), last_valid.eq(1)]
                    with m.If(is_write):
                        m.next = "W_FETCH"
                    with m.Else():
                        m.next = "REPLY_SYNC"
            # ---- a write burst, from the buffer
            with m.State("W_FETCH"):
                m.next = "W_BUS"         # the buffer's read port answers next cycle
            with m.State("W_BUS"):
                aw_done = Signal()
                w_done = Signal()
                m.d.comb += [bus.awvalid.eq(~aw_done), bus.wvalid.eq(~w_done)]
                with m.If(bus.awready):
                    m.d.sync += aw_done.eq(1)
                with m.If(bus.wready):
                    m.d.sync += w_done.eq(1)
                with m.If((aw_done | bus.awready) & (w_done | bus.wready)):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                    m.next = "W_RESP"
            with m.State("W_RESP"):
                m.d.comb += bus.bready.eq(1)
                with m.If(bus.bvalid):
                    m.d.sync += [resp.eq(resp | bus.bresp), beat.eq(beat + 1)]
                    with m.If(incr):
                        m.d.sync += addr.eq(addr + 4)
                    m.next = "W_FETCH"
                    with m.If(beat == last):
                        m.next = "REPLY_SYNC"
            # ---- the reply
            with m.State("REPLY_SYNC"):
                m.d.comb += crc_tx.start.eq(1)
                send(m, link.SYNC_REPLY, "REPLY_STATUS")
            with m.State("REPLY_STATUS"):
                send(m, status, "REPLY_SEQ")
            with m.State("REPLY_SEQ"):
                send(m, seq, "REPLY_RESP")
                with m.If(sent & (status == Status.OK)):
                    with m.If(op == Op.HELLO):
                        m.next = "R_BYTES"
                    with m.Elif(~is_write):
                        m.next = "R_ADDR"
            with m.State("R_ADDR"):
                m.d.comb += bus.arvalid.eq(1)
                with m.If(bus.arready):
                    m.next = "R_DATA"
            with m.State("R_DATA"):
                m.d.comb += bus.rready.eq(1)
                with m.If(bus.rvalid):
                    m.d.sync += [word.eq(bus.rdata), resp.eq(resp | bus.rresp)]
                    m.next = "R_BYTES"
            with m.State("R_BYTES"):
                send(m, word[:8], "R_BYTES")
                with m.If(sent):
                    m.d.sync += [word.eq(word >> 8), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == 3):
                        m.d.sync += [nbyte.eq(0), beat.eq(beat + 1)]
                        with m.If(incr):
                            m.d.sync += addr.eq(addr + 4)
                        m.next = "R_ADDR"
                        with m.If((beat == last) | (op == Op.HELLO)):
                            m.next = "REPLY_RESP"
            with m.State("REPLY_RESP"):
                send(m, resp, "REPLY_CRC_HI")
            with m.State("REPLY_CRC_HI"):
                send(m, crc_tx.crc[8:], "REPLY_CRC_LO", checked=False)
            with m.State("REPLY_CRC_LO"):
                send(m, crc_tx.crc[:8], "HUNT", checked=False)
        return m


class UartHostLink(wiring.Component):
    """UART pins ``rx``/``tx`` → :class:`UartBridge` → AXI4-Lite master ``m_axil``.

    Parameters
    ----------
    divider : int
        clock cycles per bit (clock / baud), >= 4.
    max_burst : int
        words a write burst may carry.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    m_axil: Out(axil_signature())

    def __init__(self, *, divider: int, max_burst: int = 64) -> None:
        self.divider = check_divider(divider)
        self.max_burst = _check_burst(max_burst)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UartRx(divider=self.divider)
        m.submodules.tx = tx = UartTx(divider=self.divider)
        m.submodules.bridge = bridge = UartBridge(divider=self.divider,
                                                  max_burst=self.max_burst)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        wiring.connect(m, rx.o, bridge.i)
        wiring.connect(m, bridge.o, tx.i)
        wiring.connect(m, bridge.m_axil, wiring.flipped(self.m_axil))
        return m
