"""The Program container: corrupted, tampered and invalid headers are refused on load."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from hwq.config import CoreConfig
from hwq.errors import ArtifactError
from hwq.layout import Program, compile
from hwq.layout.program import MAGIC
from hwq.testing import random_network


@pytest.fixture(scope="module")
def program() -> Program:
    net = random_network(np.random.default_rng(2), kind="codebook", bits=3)
    return compile(net, CoreConfig(pe="multiply", lanes=4, simd=4))


def with_header(program: Program, header: bytes | str) -> bytes:
    """``program``'s container with its JSON header replaced, both CRCs valid."""
    data = program.to_bytes()
    start = len(MAGIC) + 8
    (hlen,) = struct.unpack_from("<I", data, len(MAGIC) + 4)
    head = header.encode() if isinstance(header, str) else header
    body = data[:len(MAGIC) + 4] + struct.pack("<I", len(head)) + head + data[start + hlen:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def header_of(program: Program) -> dict:
    data = program.to_bytes()
    (hlen,) = struct.unpack_from("<I", data, len(MAGIC) + 4)
    start = len(MAGIC) + 8
    return json.loads(data[start:start + hlen])


def load_error(tmp_path: Path, data: bytes) -> str:
    """The one-line ArtifactError of loading ``data`` from a file, without the file name."""
    path = tmp_path / "p.hwqp"
    path.write_bytes(data)
    with pytest.raises(ArtifactError) as info:
        Program.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message[len(str(path)) + 2:]


def test_a_header_rewritten_as_is_loads(program):
    again = Program.from_bytes(with_header(program, json.dumps(header_of(program))))
    assert again.to_bytes() == program.to_bytes()


@pytest.mark.parametrize("header, expect", [
    ("[" * 200_000, "corrupted Program header (JSON nested deeper than Python's parser allows)"),
    ('{"a": ' + "[" * 200_000, "corrupted Program header (JSON nested deeper than Python's "
                               "parser allows)"),
    ("{not json", "corrupted Program header (Expecting property name enclosed in double quotes: "
                  "line 1 column 2 (char 1))"),
    (b'{"a": "\xff"}', "corrupted Program header ('utf-8' codec can't decode byte 0xff in "
                        "position 7: invalid start byte)"),
])
def test_an_unparsable_header_is_an_artifact_error(program, tmp_path, header, expect):
    assert load_error(tmp_path, with_header(program, header)) == expect
