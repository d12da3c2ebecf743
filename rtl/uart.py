"""8N1 UART receiver and transmitter with byte streams (``amaranth.lib.stream``).

The baud rate is the clock divided by ``divider`` (clock cycles per bit, >= 4): 3 Mbaud is
``divider=16`` at 48 MHz. The line idles high; a frame is a low start bit, 8 data bits LSB
first and a high stop bit.
"""


import operator

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "check_divider"]


def check_divider(divider: object) -> int:
    """``divider`` as an int if it is at least 4 clock cycles per bit."""
    try:
        d = operator.index(divider)
    except TypeError:
        raise TypeError(f"UART divider must be an integer, not {divider!r}") from None
    if d < 4:
        raise ValueError(f"UART divider must be at least 4 clock cycles per bit, not {d}")
    return d


class UartRx(wiring.Component):
    """Receiver: ``rx`` pin in, bytes out on ``o`` (dropped if ``o`` is not ready).

    The pin is synchronized by two flip-flops; each bit is sampled in its middle. A frame
    whose stop bit is low (a framing error) is dropped and pulses ``error``.

    Parameters
    ----------
    divider : int
        clock cycles per bit, >= 4.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    error: Out(1)

    def __init__(self, *, divider: int) -> None:
        self.divider = check_divider(divider)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divider + self.divider // 2 + 1))
        bits = Signal(range(10))
        shift = Signal(8)
        m.d.sync += self.error.eq(0)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # from the start bit's first cycle to the middle of data bit 0
                    m.d.sync += [timer.eq(self.divider + self.divider // 2 - 2), bits.eq(0)]
                    m.next = "BITS"
            with m.State("BITS"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(bits == 8):  # the stop bit
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                    m.next = "STOP"
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)), bits.eq(bits + 1),
                                 timer.eq(self.divider - 1)]
            with m.State("STOP"):
                # wait for the line to go high again (the stop bit, or a break to end)
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Transmitter: bytes in on ``i``, ``tx`` pin out (idle high).

    Parameters
    ----------
    divider : int
        clock cycles per bit, >= 4.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, *, divider: int) -> None:
        self.divider = check_divider(divider)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divider))
        shift = Signal(10, init=0x3FF)
        left = Signal(range(11))
        m.d.comb += [self.tx.eq(shift[0]), self.i.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.i.valid):
                m.d.sync += [shift.eq(Cat(0, self.i.payload, 1)), left.eq(10),
                             timer.eq(self.divider - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [shift.eq(Cat(shift[1:], 1)), left.eq(left - 1),
                         timer.eq(self.divider - 1)]
        return m
