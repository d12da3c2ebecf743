"""The UART link's frames (hwq.layout.link): exact bytes, and every damage detected."""

import pytest

from hwq.layout import link
from hwq.layout.link import BusResponseError, FrameError, Op, Status


def _reply(status, seq, data=b"", resp=0):
    body = bytes([link.SYNC_REPLY, status, seq]) + data + bytes([resp])
    return body + link.crc16(body).to_bytes(2, "big")


def test_request_bytes():
    frame = link.encode_request(Op.WRITE, 7, 0x38, data=[0x11223344, 5])
    body = bytes([0x5A, 0x01, 7, 0x38, 1, 0x44, 0x33, 0x22, 0x11, 5, 0, 0, 0])
    assert frame == body + link.crc16(body).to_bytes(2, "big")
    assert link.encode_request(Op.READ, 255, 0x3C, count=256)[:5] == bytes([0x5A, 0, 255, 0x3C,
                                                                             255])
    assert len(link.encode_request(Op.HELLO, 0, 0)) == link.REQUEST_OVERHEAD


@pytest.mark.parametrize("args, kwargs, message", [
    ((Op.READ, 0, 0), dict(count=0), "Burst length must be 1..256 words, not 0"),
    ((Op.WRITE, 0, 0), dict(data=[0] * 257), "Burst length must be 1..256 words, not 257"),
    ((Op.READ, 256, 0), {}, "Sequence number must be 0..255, not 256"),
    ((Op.READ, 0, 2), {}, "Address must be a multiple of 4 in 0..252, not 2"),
])
def test_bad_requests_are_refused(args, kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        link.encode_request(*args, **kwargs)


def test_replies_decode_and_every_damage_is_an_error():
    ok = _reply(0, 9, (0xCAFE).to_bytes(4, "little") + (1).to_bytes(4, "little"))
    assert link.decode_reply(ok, Op.READ, 9, 2) == [0xCAFE, 1]
    assert link.decode_reply(_reply(0, 3), Op.WRITE, 3, 5) == []
    hello = _reply(0, 0, link.hello_word(max_burst=64, divider=16).to_bytes(4, "little"))
    assert link.parse_hello(link.decode_reply(hello, Op.HELLO, 0)[0]) == {
        "version": 1, "max_burst": 64, "divider": 16}
    cases = [
        (ok[:4], "reply too short: 4 of at least 6 bytes"),
        (ok[:-1], "reply has 13 bytes, expected 14"),
        (b"\x00" + ok[1:], "reply starts with 0x00, not the sync byte 0xa5"),
        (ok[:5] + bytes([ok[5] ^ 1]) + ok[6:], "reply CRC does not check"),
        (_reply(0, 8, bytes(8)), "reply to sequence number 8, expected 9"),
        (_reply(Status.BAD_CRC, 9), "the bridge refused the request: BAD_CRC"),
        (_reply(77, 9), "the bridge refused the request: <status 77>"),
    ]
    for frame, message in cases:
        with pytest.raises(FrameError, match=f"^{message}"):
            link.decode_reply(frame, Op.READ, 9, 2)
    with pytest.raises(FrameError) as info:
        link.decode_reply(_reply(Status.FRAME_TIMEOUT, 0), Op.READ, 9, 2)
    assert info.value.status is Status.FRAME_TIMEOUT
    with pytest.raises(BusResponseError, match="AXI4-Lite error response 0x2 from the core"):
        link.decode_reply(_reply(0, 9, bytes(8), resp=2), Op.READ, 9, 2)
