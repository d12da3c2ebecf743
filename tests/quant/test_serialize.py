"""Saving and loading a QuantizedNetwork: exact round trips, corruption, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from hwq import golden, ir
from hwq.errors import ArtifactError
from hwq.quant.base import fold_batchnorm
from hwq.quant.integerize import integerize
from hwq.quant.uniform import quantize_uniform
from hwq.serialize import FORMAT_VERSION, MANIFEST_DIGEST, from_bytes, load, save, to_bytes
from hwq.testing import random_inputs, random_network


@pytest.fixture(scope="module")
def digits_network(digits_reference, digits_data) -> ir.QuantizedNetwork:
    folded = fold_batchnorm(digits_reference)
    qweights = quantize_uniform(folded, None, bits=4)
    return integerize(folded, qweights, digits_data.x_train[:256],
                      meta={"method": "uniform", "bits": 4, "note": "ünïcode"})


@pytest.fixture
def saved(digits_network, tmp_path) -> Path:
    return save(digits_network, tmp_path / "net.safetensors")


def _assert_same_network(a: ir.QuantizedNetwork, b: ir.QuantizedNetwork) -> None:
    assert (a.input_shape, a.act_bits, a.input_scale, a.meta) == \
        (b.input_shape, b.act_bits, b.input_scale, b.meta)
    assert [(op.kind, op.name) for op in a.ops] == [(op.kind, op.name) for op in b.ops]
    for x, y in zip(a.weight_ops(), b.weight_ops(), strict=True):
        assert y.weight.dtype == np.int64
        np.testing.assert_array_equal(x.weight, y.weight)
        assert x.spec.kind == y.spec.kind and x.spec.table_bits == y.spec.table_bits
        np.testing.assert_array_equal(x.spec.bits, y.spec.bits)
        assert (x.spec.table is None) == (y.spec.table is None)
        if x.spec.table is not None:
            np.testing.assert_array_equal(x.spec.table, y.spec.table)
        for f in ("bias", "M", "S"):
            np.testing.assert_array_equal(getattr(x.requant, f), getattr(y.requant, f))
        assert (x.requant.lo, x.requant.hi, x.out_scale) == (y.requant.lo, y.requant.hi,
                                                               y.out_scale)
        if x.kind == "conv2d":
            assert (x.stride, x.padding) == (y.stride, y.padding)


# --- round trips ----------------------------------------------------------------------------


def test_digits_round_trip_is_exact(digits_network, saved, digits_data):
    again = load(saved)
    _assert_same_network(digits_network, again)
    assert to_bytes(again) == saved.read_bytes() == to_bytes(digits_network)  # deterministic
    xi = golden.quantize_input(digits_data.x_test.numpy(), again.input_scale, again.act_bits)
    np.testing.assert_array_equal(golden.run(again, xi), golden.run(digits_network, xi))


@pytest.mark.parametrize("kind, bits, per_channel", [
    ("int", [2, 3, 8], True), ("pot", 5, False), ("pot", [2, 4], True),
    ("codebook", [1, 3, 4], True), ("codebook", 8, False),
])
def test_random_network_round_trip_is_exact(tmp_path, kind, bits, per_channel):
    rng = np.random.default_rng(len(str(bits)) + per_channel)
    net = random_network(rng, kind=kind, bits=bits, per_channel_bits=per_channel,
                         act_bits=6, zero_tile_fraction=0.3)
    again = load(save(net, tmp_path / "r.safetensors"))
    _assert_same_network(net, again)
    x = random_inputs(rng, net, 4)
    np.testing.assert_array_equal(golden.run(again, x), golden.run(net, x))


# --- corruption: every case is an ArtifactError naming the file ------------------------------


def _rewrite(path: Path, *, manifest=None, tensors=None, fix_digest: bool = True) -> None:
    """Re-save ``path`` with its manifest and/or tensors changed by the given functions.

    With ``fix_digest`` the manifest's own SHA-256 is recomputed (a deliberate edit, or a
    buggy writer), so that the checks behind it are reached.
    """
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + n])["__metadata__"]
    man = json.loads(meta["hwq"])
    ts = dict(st_load(data))
    if manifest:
        manifest(man)
    if tensors:
        tensors(ts)
    if fix_digest:
        body = {k: v for k, v in man.items() if k != MANIFEST_DIGEST}
        man[MANIFEST_DIGEST] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    path.write_bytes(st_save(ts, metadata={"hwq": json.dumps(man, sort_keys=True)}))


def _load_error(path: Path) -> str:
    with pytest.raises(ArtifactError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message[len(str(path)) + 2 :]


def _header_length(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[:8], "little")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    assert _load_error(path) == "not a safetensors file (only 0 bytes)"


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "text.safetensors"
    path.write_text("this is a text file, not a network\n")
    assert _load_error(path) == ("not a safetensors file (no JSON header after the 8-byte "
                                 "length)")


def test_safetensors_file_that_is_not_a_network(tmp_path):
    path = tmp_path / "other.safetensors"
    path.write_bytes(st_save({"w": np.zeros(3, np.float32)}, metadata={"format": "pt"}))
    assert _load_error(path) == "not an hwq network (no 'hwq' manifest in the metadata)"


@pytest.mark.parametrize("keep", [5, 100, -1, -200])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:keep])
    n = _header_length(saved) if keep > 8 else None
    message = _load_error(saved)
    if keep == 5:
        assert message == "not a safetensors file (only 5 bytes)"
    elif keep == 100:
        assert message == f"truncated (header of {n} bytes, file of 100)"
    else:
        assert message.startswith("corrupted or truncated tensor data (")


@pytest.mark.parametrize("where", [-1, "middle", "first"])
def test_flipped_byte_in_tensor_data(saved, where):
    data = bytearray(saved.read_bytes())
    start = 8 + _header_length(saved)
    index = {-1: len(data) - 1, "middle": (start + len(data)) // 2, "first": start}[where]
    data[index] ^= 0x01
    saved.write_bytes(bytes(data))
    message = _load_error(saved)
    assert message.startswith("checksum mismatch in tensor 'ops.")
    assert message.endswith("(the file was modified or corrupted)")


def test_flipped_byte_in_header(saved):
    data = bytearray(saved.read_bytes())
    data[8 + 1] ^= 0x40  # '"' -> 'b': the header is no longer JSON
    saved.write_bytes(bytes(data))
    assert _load_error(saved).startswith("corrupted safetensors header (")


def test_flipped_digit_in_a_header_checksum(saved):
    data = saved.read_bytes()
    n = _header_length(saved)
    header = data[8 : 8 + n].decode()
    manifest = json.loads(json.loads(header)["__metadata__"]["hwq"])
    digest = manifest["checksums"]["ops.0.weight"]
    pos = header.index(digest)
    flipped = "0" if digest[0] != "0" else "1"
    header = header[:pos] + flipped + header[pos + 1 :]
    saved.write_bytes(data[:8] + header.encode() + data[8 + n :])
    assert _load_error(saved) == ("manifest checksum mismatch (the header was modified or "
                                  "corrupted)")


def test_every_single_bit_flip_in_the_header_is_detected_or_harmless(digits_network):
    """A flip either raises, or leaves a network identical to the original (the last digit
    of a 17-digit float repr can change without changing the float64)."""
    data = to_bytes(digits_network)
    n = int.from_bytes(data[:8], "little")
    changed = []
    for i in range(8, 8 + n):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        try:
            network = from_bytes(bytes(flipped))
        except ArtifactError:
            continue
        if to_bytes(network) != data:
            changed.append(i)
    assert changed == []


def test_edited_manifest_without_its_digest_is_detected(saved):
    _rewrite(saved, manifest=lambda m: m.update(act_bits=9), fix_digest=False)
    assert _load_error(saved) == ("manifest checksum mismatch (the header was modified or "
                                  "corrupted)")


def test_wrong_format_version(saved):
    _rewrite(saved, manifest=lambda m: m.update(format_version=FORMAT_VERSION + 1,
                                                hwq_version="9.9.9"))
    assert _load_error(saved) == (
        f"network format version {FORMAT_VERSION + 1} is not supported by hwq 0.1.0 "
        f"(reads versions 1 and {FORMAT_VERSION}; written by hwq 9.9.9): a newer hwq wrote "
        "it: upgrade hwq")


def test_wrong_format_name(saved):
    _rewrite(saved, manifest=lambda m: m.update(format="hwq.Program"))
    assert _load_error(saved) == "not an hwq network (format 'hwq.Program')"


def test_tampered_weight_checksum(saved):
    _rewrite(saved, manifest=lambda m: m["checksums"].update({"ops.3.bias": "0" * 64}))
    assert _load_error(saved) == ("checksum mismatch in tensor 'ops.3.bias' "
                                  "(the file was modified or corrupted)")


def test_tampered_weights_with_a_matching_checksum_fail_validation(saved):
    """Weights outside their 4-bit format are refused even if the checksum is recomputed."""
    from hwq.serialize import _digest

    def tamper(ts):
        w = ts["ops.0.weight"].copy()
        w.flat[0] = 100
        ts["ops.0.weight"] = w

    def fix_checksum(m):
        m["checksums"]["ops.0.weight"] = _digest(tampered["ops.0.weight"])

    tampered: dict = {}
    _rewrite(saved, tensors=lambda ts: (tamper(ts), tampered.update(ts)))
    _rewrite(saved, manifest=fix_checksum)
    message = _load_error(saved)
    assert message.startswith("invalid network: 0: INT weights must be 4-bit two's complement")


@pytest.mark.parametrize("change, expect", [
    (lambda m: m["ops"][0].update(hi=300),
     "invalid network: 0: clamp bounds 0..300 must lie within the 8-bit activation range "
     "-128..127"),
    (lambda m: m["ops"][0].update(stride=0),
     "invalid network: ops[0] '0': field 'stride': 0 is not allowed (a list of 2 integers "
     "1..65536)"),
    (lambda m: m["ops"][0].update(stride=[1.7, 1]),
     "invalid network: ops[0] '0': field 'stride': [1.7, 1] is not allowed (a list of 2 "
     "integers 1..65536)"),
    (lambda m: m["ops"][1].update(padding=[0, 0, 0, 0]),
     "invalid network: 12: input of shape (32,) does not fit linear weights (10, 128) "
     "(flatten first?)"),
    (lambda m: m["ops"][2].update(kind="upsample"),
     "invalid network: ops[2] '6': field 'kind': 'upsample' is not allowed (one of 'add', "
     "'conv2d', 'flatten', 'linear', 'maxpool2d', 'avgpool2d', 'global_avgpool2d')"),
    (lambda m: m["ops"][0].update(out_scale=float("nan")),
     "invalid network: ops[0] '0': field 'out_scale': nan is not allowed (a finite positive "
     "number)"),
    (lambda m: m["ops"][0].update(surprise=1),
     "invalid network: ops[0] '0': unknown field(s) ['surprise']"),
    (lambda m: m["ops"][0]["spec"].update(table_bits=99),
     "invalid network: ops[0] '0': field 'spec': field 'table_bits': 99 is not allowed (an "
     "integer 2..8)"),
    (lambda m: m.update(act_bits=1),
     "invalid network: manifest: field 'act_bits': 1 is not allowed (an integer 2..16)"),
    (lambda m: m.update(act_bits="8"),
     "invalid network: manifest: field 'act_bits': '8' is not allowed (an integer 2..16)"),
    (lambda m: m.update(input_scale=-1.0),
     "invalid network: manifest: field 'input_scale': -1.0 is not allowed (a finite positive "
     "number)"),
    (lambda m: m.update(ops=[]), "invalid network: manifest: field 'ops': [] is not allowed "
     "(a list of at least one op)"),
    (lambda m: m["ops"][0].pop("lo"), "invalid network: ops[0] '0': field 'lo' is missing"),
    (lambda m: m["ops"].__setitem__(0, [1, 2]),
     "invalid network: ops[0]: must be a JSON object, not [1, 2]"),
])
def test_tampered_op_parameter_breaks_validation(saved, change, expect):
    _rewrite(saved, manifest=change)
    assert _load_error(saved) == expect


def test_missing_and_extra_tensors(saved, tmp_path):
    _rewrite(saved, tensors=lambda ts: ts.pop("ops.0.bias"))
    assert _load_error(saved) == ("tensor set does not match the manifest "
                                  "(missing ['ops.0.bias'], unexpected [])")
    _rewrite(saved, tensors=lambda ts: ts.update({"ops.0.bias": np.zeros(16, np.int32),
                                                  "extra": np.zeros(1, np.int8)}))
    assert _load_error(saved) == ("tensor set does not match the manifest "
                                  "(missing [], unexpected ['extra'])")


def test_corrupted_manifest_json(saved):
    data = saved.read_bytes()
    ts = dict(st_load(data))
    saved.write_bytes(st_save(ts, metadata={"hwq": "{not json"}))
    assert _load_error(saved).startswith("corrupted manifest (")


def _edit_safetensors_header(path: Path, edit) -> None:
    """Rewrite the raw safetensors header of ``path`` (JSON object -> JSON text), data kept."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    text = edit(json.loads(data[8 : 8 + n]))
    head = text.encode() if isinstance(text, str) else text
    path.write_bytes(len(head).to_bytes(8, "little") + head + data[8 + n :])


@pytest.mark.parametrize("old, new", [("I8", "F8_E5M2"), ("I8", "U8"), ("I8", "BOOL"),
                                      ("I16", "BF16"), ("I16", "F16"), ("I32", "F32"),
                                      ("I64", "U64")])
def test_a_tensor_dtype_swapped_for_another_of_its_size(saved, old, new):
    # the data offsets still fit: safetensors itself accepts the file
    key = ""

    def swap(header):
        nonlocal key
        key = next(k for k, v in sorted(header.items()) if k != "__metadata__"
                   and v["dtype"] == old)
        header[key]["dtype"] = new
        return json.dumps(header)

    if old == "I64":  # the digits network has no int64 tensor: make one
        _rewrite(saved, tensors=lambda ts: ts.update({"ops.0.bias": ts["ops.0.bias"]
                                                      .astype(np.int64)}))
    _edit_safetensors_header(saved, swap)
    assert _load_error(saved) == (f"tensor {key!r} has dtype {new!r}; an hwq network holds "
                                  "only I8, I16, I32, I64 tensors")


@pytest.mark.parametrize("where", ["header", "manifest"])
def test_deeply_nested_json_is_an_artifact_error(saved, where):
    deep = "[" * 200_000
    if where == "header":
        _edit_safetensors_header(saved, lambda header: '{"a": ' + deep)
        expect = "corrupted safetensors header (JSON nested deeper than Python's parser allows)"
    else:
        data = saved.read_bytes()
        saved.write_bytes(st_save(dict(st_load(data)), metadata={"hwq": deep}))
        expect = "corrupted manifest (JSON nested deeper than Python's parser allows)"
    assert _load_error(saved) == expect


@pytest.mark.parametrize("network", [None, "net", {"ops": []}])
def test_save_refuses_what_is_not_a_network(tmp_path, network):
    with pytest.raises(TypeError) as info:
        save(network, tmp_path / "n.safetensors")
    assert str(info.value) == ("Network must be a hwq.ir.QuantizedNetwork, not "
                               f"{type(network).__name__}")
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_not_an_artifact_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No network file at"):
        load(tmp_path / "nothing.safetensors")


def test_from_bytes_names_its_source(digits_network):
    with pytest.raises(ArtifactError, match=r"^<bytes>: truncated"):
        from_bytes(to_bytes(digits_network)[:50])


# --- atomic writes --------------------------------------------------------------------------


class _Boom(OSError):
    pass


def _fail(*args, **kwargs):
    raise _Boom("disk on fire")


@pytest.mark.parametrize("broken", ["replace", "fsync"])
@pytest.mark.parametrize("existing", [True, False])
def test_failed_write_leaves_the_target_and_no_temp_file(digits_network, tmp_path, monkeypatch,
                                                         broken, existing):
    target = tmp_path / "net.safetensors"
    old = b"previous network bytes"
    if existing:
        target.write_bytes(old)
    monkeypatch.setattr(os, broken, _fail)
    with pytest.raises(_Boom):
        save(digits_network, target)
    assert [p.name for p in tmp_path.iterdir()] == (["net.safetensors"] if existing else [])
    if existing:
        assert target.read_bytes() == old


def test_interrupted_write_cleans_up(digits_network, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save(digits_network, tmp_path / "net.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_successful_write_replaces_the_target(digits_network, tmp_path):
    target = tmp_path / "sub" / "net.safetensors"
    target.parent.mkdir()
    target.write_bytes(b"old")
    assert save(digits_network, target) == target
    assert [p.name for p in target.parent.iterdir()] == ["net.safetensors"]
    assert target.read_bytes() == to_bytes(digits_network)
    _assert_same_network(load(target), digits_network)


# --- graph networks and wave-1 files --------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_graph_network_round_trip_is_exact(seed, tmp_path):
    from hwq.testing import random_graph_network

    rng = np.random.default_rng(seed)
    kind = ["int", "pot", "codebook"][seed % 3]
    net = random_graph_network(rng, kind=kind, bits=[2, 4], per_channel_bits=bool(seed % 2),
                               blocks=["res", "res_proj", "dw", "grouped", "avgpool",
                                       "maxpool", "odd_conv"])
    again = load(save(net, tmp_path / "g.safetensors"))
    assert [(op.kind, op.name, op.inputs) for op in again.ops] == \
        [(op.kind, op.name, op.inputs) for op in net.ops]
    for a, b in zip(net.ops, again.ops, strict=True):
        fa, ta = a.manifest()
        fb, tb = b.manifest()
        assert fa == fb
        assert set(ta) == set(tb)
        for k in ta:
            np.testing.assert_array_equal(np.asarray(ta[k]), np.asarray(tb[k]))
    x = random_inputs(rng, net, 4)
    np.testing.assert_array_equal(golden.run(again, x), golden.run(net, x))


def _as_version_1(m: dict) -> None:
    """The manifest as wave-1 hwq wrote it: a chain, square kernels, one stride/padding."""
    m["format_version"] = 1
    for e in m["ops"]:
        e.pop("inputs")
        if e["kind"] in ("maxpool2d", "flatten"):
            for k in ("kernel", "stride", "padding", "tensors"):
                e.pop(k, None)
        if e["kind"] == "conv2d":
            e["stride"], e["padding"] = e["stride"][0], e["padding"][0]
            e.pop("dilation")
            e.pop("groups")


def test_wave1_file_is_migrated(saved, digits_network, digits_data):
    _rewrite(saved, manifest=_as_version_1)
    data = saved.read_bytes()
    man = json.loads(json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
                     ["__metadata__"]["hwq"])
    assert man["format_version"] == 1 and "inputs" not in man["ops"][0]
    again = load(saved)
    _assert_same_network(digits_network, again)
    x = golden.quantize_input(digits_data.x_test[:50].numpy(), again.input_scale, 8)
    np.testing.assert_array_equal(golden.run(again, x), golden.run(digits_network, x))


def test_unknown_format_version_says_how_to_remake(saved):
    _rewrite(saved, manifest=lambda m: m.update(format_version=99))
    message = _load_error(saved)
    assert message.startswith("network format version 99 is not supported by hwq ")
    assert message.endswith("a newer hwq wrote it: upgrade hwq")
    _rewrite(saved, manifest=lambda m: m.update(format_version=0))
    assert _load_error(saved).endswith("re-create the network with `hwq quantize`")


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_umask_permissions(digits_network, tmp_path, mask, mode):
    import stat

    from hwq.serialize import atomic_write

    old = os.umask(mask)
    try:
        save(digits_network, tmp_path / "net.safetensors")
        atomic_write(tmp_path / "sub" / "x.json", b"{}")
    finally:
        os.umask(old)
    for path in (tmp_path / "net.safetensors", tmp_path / "sub" / "x.json"):
        assert stat.S_IMODE(path.stat().st_mode) == mode
