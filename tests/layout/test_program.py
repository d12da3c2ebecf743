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


def _fingerprint(header: dict) -> None:
    """Recompute the fingerprint of a still valid config (a deliberate edit)."""
    try:
        header["fingerprint"] = CoreConfig.from_dict(header["config"]).fingerprint()
    except (TypeError, ValueError):
        pass


def _set(path: str, value):
    """An edit of the header: set the field at dotted ``path`` (list indices as numbers)."""
    def edit(header):
        *parents, last = path.split(".")
        node = header
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        if path.startswith("config."):
            _fingerprint(header)
    return edit


def _drop(path: str):
    def edit(header):
        *parents, last = path.split(".")
        node = header
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]
    return edit


HEADER = "format, format_version, hwq_version, config, fingerprint, input, output, layers, meta, sections"


@pytest.mark.parametrize("edit, expect", [
    # the version inside the header
    (_set("format_version", 6), "field format_version must be 9 (the version hwq 0.1.0 reads), not 6"),
    (_set("format_version", "7"), "field format_version must be 9 (the version hwq 0.1.0 reads), not '7'"),
    # keys missing or unknown
    (_drop("layers"), "field layers must be present, not missing"),
    (_set("extra", 1), f"field extra must be left out (the fields are {HEADER}), not 1"),
    (_drop("config.act_depth"), "field config.act_depth must be present, not missing"),
    (_drop("sections.1.crc32"), "field sections[1].crc32 must be present, not missing"),
    (_drop("layers.0.cycles"), "field layers[0].cycles must be present, not missing"),
    (_set("layers.0.colour", "red"), "field layers[0].colour must be left out (the fields are "
     "name, kind, op, cycles, steps, positions, w_base, w_words, p_base, groups, k_tiles, "
     "tile_mask, tile_bits, tile, wait, ld_words, ld_src, ld_act, st_words, st_dst, rows, "
     "fused, dw_tile), not 'red'"),
    # types: no coercion
    (_set("config.act_bits", "8"), "field config.act_bits must be an integer in 2..16, not '8'"),
    (_set("config.act_bits", 8.9), "field config.act_bits must be an integer in 2..16, not 8.9"),
    (_set("config.act_bits", 8.0), "field config.act_bits must be an integer in 2..16, not 8.0"),
    (_set("config.lanes", True), "field config.lanes must be an integer in 1..256, not True"),
    (_set("config.lanes", 0), "field config.lanes must be an integer in 1..256, not 0"),
    (_set("config.pe", ["multiply"]), "field config.pe must be one of shift_add, bit_serial, "
     "multiply, not ['multiply']"),
    (_set("config.simd", 3), "field config must be a valid core config (Lanes and SIMD width "
     "must divide one another, not lanes=4, simd=3), not {"),
    (_set("layers.0.cycles", "5"), "field layers[0].cycles must be an integer >= 0, not '5'"),
    (_set("layers.0.name", 5), "field layers[0].name must be a string, not 5"),
    (_set("layers.0.steps", 5), "field layers[0].steps must be a JSON list, not 5"),
    (_set("meta", []), "field meta must be a JSON object, not []"),
    (_set("input", [0, [3, 8, 8], 1, [3, 8, 8]]), "field input must be a JSON object, not "
     "[0, [3, 8, 8], 1, [3, 8, 8]]"),
    (_set("input.chw", [3, 8]), "field input.chw must be 3 positive integers (C, H, W), not [3, 8]"),
    (_set("input.shape", [3, 8, 9]), "field input.shape must be a shape of 192 values (chw "
     "[3, 8, 8]), not [3, 8, 9]"),
    (_set("input.ct", 2), "field input.ct must be 7 (ceil(C / simd)), not 2"),
    (_set("sections.0.chunks", 1.0), "field sections[0].chunks must be "),
    (_set("sections", []), "field sections must be one entry for each of desc, weight, param, "
     "ext, not []"),
    (_set("fingerprint", "0" * 16), "field fingerprint must be "),
    # sizes: images and tensors within the config's memories
    (_set("config.weight_depth", 16), "field sections[1].words must be at most 16 (the weight "
     "memory's depth, config.weight_depth), not "),
    (_set("config.desc_depth", 2), "field sections[0].words must be at most 2 (the desc "
     "memory's depth, config.desc_depth), not 4"),
    (_set("input.base", 4090), "field input.base must be an integer in 0..3648 (its 448 words "
     "within the 4096-word activation memory, config.act_depth), not 4090"),
    (_set("output.base", -1), "field output.base must be an integer in 0..4093 (its 3 words "
     "within the 4096-word activation memory, config.act_depth), not -1"),
    (lambda h: h["layers"].pop(), "field layers must be one layer per descriptor (4), not 3 layers"),
    (_set("sections.1.offset", 10**9), "field sections[1].offset must be an integer in 0.."),
])
def test_header_fields_are_checked_on_load(program, tmp_path, edit, expect):
    header = header_of(program)
    edit(header)
    message = load_error(tmp_path, with_header(program, json.dumps(header)))
    assert message.startswith("Program header " + expect), message


def test_header_must_be_an_object(program, tmp_path):
    assert load_error(tmp_path, with_header(program, "[1, 2]")) == (
        "Program header (the JSON text) must be a JSON object, not [1, 2]")
    assert load_error(tmp_path, with_header(program, '{"format": "hwq.QuantizedNetwork"}')) == (
        "not an hwq Program (format 'hwq.QuantizedNetwork')")


def test_numpy_integers_in_a_config_become_python_ints():
    config = CoreConfig(pe=np.str_("multiply"), lanes=np.int64(4), simd=np.uint8(4),
                        act_bits=np.int32(8), act_depth=np.int64(4096))
    assert all(type(getattr(config, name)) is int for name in CoreConfig.INT_FIELDS)
    assert type(config.pe) is str
    plain = CoreConfig(pe="multiply", lanes=4, simd=4)
    assert config == plain and config.fingerprint() == plain.fingerprint()
    net = random_network(np.random.default_rng(2), kind="codebook", bits=3)
    assert compile(net, config).to_bytes() == compile(net, plain).to_bytes()


def test_pack_input_needs_at_least_one_sample(program):
    from hwq.layout import execute

    with pytest.raises(ValueError) as info:
        execute(program, np.zeros((0, 3, 8, 8), np.int64))
    assert str(info.value) == ("Network input must hold at least one sample (N >= 1), not shape "
                               "(0, 3, 8, 8)")
