"""The UART host link's byte protocol, described once: the bridge RTL and the host both use it.

:class:`hwq.rtl.uart_bridge.UartBridge` decodes these frames into AXI4-Lite transactions on
the core's register block; :class:`hwq.host.serial.SerialDevice` encodes them with
:func:`encode_request` and checks the replies with :func:`decode_reply`. Pure Python (no
Amaranth): the host imports it.

Request (host to bridge), ``n = LEN + 1`` words (1..256)::

    SYNC_REQUEST  OP  SEQ  ADDR  LEN  [n x 4 data bytes, little endian, if OP is a write]  CRC16

Reply (bridge to host)::

    SYNC_REPLY  STATUS  SEQ  [n x 4 data bytes if STATUS is OK and OP a read or HELLO]  RESP  CRC16

* ``OP`` (:class:`Op`): bit 0 write, bit 1 increment the address by 4 per word (else every
  word goes to ``ADDR``, the way ``BULK_WDATA``/``BULK_RDATA`` take a stream), ``HELLO``
  returns one word (:func:`hello_word`) and forgets the last sequence number. A frame carries
  data exactly when bit 0 of ``OP`` is set, so the framing never depends on an op's meaning.
* ``SEQ``: the host's sequence number, echoed in the reply. The bridge remembers the ``SEQ``
  of the last command it executed; a write whose ``SEQ`` equals it is answered ``OK``
  without being executed again. A host that sends every new command with the next ``SEQ``
  (mod 256) and repeats a failed command with the same ``SEQ`` therefore never writes twice:
  writes are idempotent under retry. Reads are executed again (retry only side-effect-free
  ones; re-address ``BULK_ADDR`` before repeating a ``BULK_RDATA`` burst).
* ``ADDR``: byte offset in the register window (``ADDR_BYTES`` bytes, little endian).
* ``CRC16``: CRC-16/IBM-3740 (polynomial 0x1021, initial 0xFFFF, not reflected, no final
  XOR; :func:`binascii.crc_hqx` with 0xFFFF) of every byte of the frame before it, sent high
  byte first. It detects every error burst of up to 16 bits.
* ``STATUS`` (:class:`Status`): ``OK``, or why the request was refused *without executing
  anything*: a failed CRC, an unknown op, a burst longer than the bridge buffers, or a frame
  that stopped arriving (no byte for :data:`FRAME_TIMEOUT_BITS` bit times; a dropped byte).
  An error reply carries no data.
* ``RESP``: the OR of the AXI4-Lite ``bresp``/``rresp`` of the command (0 = OKAY).

A write burst is buffered in the bridge and executed only after its CRC checks, so a
corrupted byte never reaches a register.
"""

from __future__ import annotations

import binascii
import enum
from collections.abc import Sequence

from hwq.errors import HwqError
from hwq.layout.regmap import ADDR_WIDTH

__all__ = ["ADDR_BYTES", "CRC_INIT", "CRC_POLY", "FRAME_TIMEOUT_BITS", "MAX_BURST",
           "PROTOCOL_VERSION", "SYNC_REPLY", "SYNC_REQUEST", "BusResponseError", "FrameError",
           "Op", "Status", "crc16", "decode_reply", "encode_request", "hello_word", "parse_hello",
           "reply_length"]

#: Protocol version, reported by ``HELLO``.
PROTOCOL_VERSION = 1
#: First byte of every request / reply.
SYNC_REQUEST = 0x5A
SYNC_REPLY = 0xA5
#: Bytes of ``ADDR``: the register window's address width, rounded up to bytes.
ADDR_BYTES = (ADDR_WIDTH + 7) // 8
#: Words a burst may carry at most (``LEN`` is one byte); a bridge may buffer fewer.
MAX_BURST = 256
#: CRC-16/IBM-3740 parameters (``amaranth.lib.crc.catalog.CRC16_IBM_3740``).
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF
#: Bit times without a byte after which the bridge drops a partial frame (error reply).
FRAME_TIMEOUT_BITS = 40
#: Bytes of a request / reply besides data: SYNC OP SEQ ADDR LEN CRC / SYNC STATUS SEQ RESP CRC.
REQUEST_OVERHEAD = 3 + ADDR_BYTES + 1 + 2
REPLY_OVERHEAD = 3 + 1 + 2


class Op(enum.IntEnum):
    """Request opcodes: bit 0 write, bit 1 incrementing address."""

    READ = 0x00          #: read ``n`` words, all from ``ADDR`` (a FIFO register)
    WRITE = 0x01         #: write ``n`` words, all to ``ADDR``
    READ_INCR = 0x02     #: read ``n`` words from ``ADDR``, ``ADDR + 4``, ...
    WRITE_INCR = 0x03    #: write ``n`` words to ``ADDR``, ``ADDR + 4``, ...
    HELLO = 0x04         #: one word back (:func:`hello_word`); forget the last SEQ

    @property
    def is_write(self) -> bool:
        return bool(self & 1)


class Status(enum.IntEnum):
    """Reply status; anything but ``OK`` means nothing was executed."""

    OK = 0
    BAD_CRC = 1          #: the request's CRC did not check
    BAD_OP = 2           #: unknown opcode
    BAD_LEN = 3          #: a burst longer than the bridge's buffer
    FRAME_TIMEOUT = 4    #: the frame stopped arriving (a byte was dropped)


class FrameError(HwqError):
    """A reply that is not the answer to the request: short, corrupted, or an error status.

    ``status`` is the bridge's :class:`Status` when it sent one, else ``None`` (the reply
    itself was damaged or missing).
    """

    def __init__(self, message: str, status: Status | None = None) -> None:
        super().__init__(message)
        self.status = status


class BusResponseError(HwqError):
    """The link worked but the core answered a transaction with an AXI error response."""


def crc16(data: bytes | bytearray) -> int:
    """CRC-16/IBM-3740 of ``data`` (``crc16(b"123456789") == 0x29B1``)."""
    return binascii.crc_hqx(bytes(data), CRC_INIT)


def _framed(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "big")


def hello_word(*, max_burst: int, divider: int) -> int:
    """The ``HELLO`` reply word: version [7:0], log2(max_burst) [15:8], divider [31:16]."""
    return PROTOCOL_VERSION | (max_burst.bit_length() - 1) << 8 | (divider & 0xFFFF) << 16


def parse_hello(word: int) -> dict[str, int]:
    """``{"version", "max_burst", "divider"}`` from a ``HELLO`` reply word."""
    return {"version": word & 0xFF, "max_burst": 1 << (word >> 8 & 0xFF),
            "divider": word >> 16 & 0xFFFF}


def encode_request(op: Op, seq: int, addr: int, *, count: int = 1,
                   data: Sequence[int] = ()) -> bytes:
    """One request frame.

    Parameters
    ----------
    op : Op
    seq : int
        0..255.
    addr : int
        byte offset, word aligned, below ``2**ADDR_WIDTH``.
    count : int
        words to read (reads, 1..:data:`MAX_BURST`); writes take ``len(data)``.
    data : sequence of int
        32-bit words of a write.
    """
    op = Op(op)
    if op.is_write:
        count = len(data)
    if not 1 <= count <= MAX_BURST:
        raise ValueError(f"Burst length must be 1..{MAX_BURST} words, not {count}")
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"Sequence number must be 0..255, not {seq!r}")
    if addr % 4 or not 0 <= addr < 1 << ADDR_WIDTH:
        raise ValueError(f"Address must be a multiple of 4 in 0..{(1 << ADDR_WIDTH) - 4}, "
                         f"not {addr!r}")
    body = bytes([SYNC_REQUEST, op, seq]) + addr.to_bytes(ADDR_BYTES, "little") + bytes([count - 1])
    if op.is_write:
        body += b"".join(int(w).to_bytes(4, "little") for w in data)
    return _framed(body)


def reply_length(op: Op, count: int = 1) -> int:
    """Bytes of the OK reply to ``op`` over ``count`` words (an error reply has no data)."""
    words = 1 if op == Op.HELLO else (0 if Op(op).is_write else count)
    return REPLY_OVERHEAD + 4 * words


def decode_reply(frame: bytes, op: Op, seq: int, count: int = 1) -> list[int]:
    """The words of a reply to request ``(op, seq, count)``; checks everything.

    Raises
    ------
    FrameError
        the frame is short, has another sync byte or sequence number, a bad CRC, a non-OK
        status (its :class:`Status` in ``.status``) or a bus error response.
    """
    if len(frame) < REPLY_OVERHEAD:
        raise FrameError(f"reply too short: {len(frame)} of at least {REPLY_OVERHEAD} bytes "
                         "(a byte was lost or the bridge did not answer)")
    if frame[0] != SYNC_REPLY:
        raise FrameError(f"reply starts with {frame[0]:#04x}, not the sync byte "
                         f"{SYNC_REPLY:#04x}")
    status = frame[1]
    expected = REPLY_OVERHEAD if status != Status.OK else reply_length(op, count)
    if len(frame) != expected:
        raise FrameError(f"reply has {len(frame)} bytes, expected {expected} "
                         "(a byte was lost or added)")
    if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "big"):
        raise FrameError("reply CRC does not check (a byte was corrupted on the line)")
    if status != Status.OK:
        # before the sequence number: a frame that lost bytes may have lost its SEQ too
        known = status in Status._value2member_map_
        raise FrameError(f"the bridge refused the request: "
                         f"{Status(status).name if known else f'<status {status}>'}",
                         Status(status) if known else None)
    if frame[2] != seq:
        raise FrameError(f"reply to sequence number {frame[2]}, expected {seq} (a stale reply)")
    resp = frame[-3]
    if resp:
        raise BusResponseError(f"AXI4-Lite error response {resp:#x} from the core")
    payload = frame[3:-3]
    return [int.from_bytes(payload[i:i + 4], "little") for i in range(0, len(payload), 4)]
