"""Tests of the sparse weight stream and the compressed network file of ``joint``: exact
round trips (every layer shape of every reference network, hostile masks), exact lengths of
the position codes by hand, and a compressed file that loads as the same network."""

from __future__ import annotations

import numpy as np
import pytest

from hwq.errors import ArtifactError
from hwq.quant.base import fold_batchnorm, weight_layers
from hwq.quant.joint.compressed import from_compressed_bytes, to_compressed_bytes
from hwq.quant.joint.stream import (
    CODES,
    decode,
    encode,
    encode_layer,
    position_bits,
    position_marginal,
)
from hwq.serialize import load, save, to_bytes
from hwq.workloads import digits, models


def _roundtrip(layers: dict[str, np.ndarray]) -> tuple[int, dict]:
    data, nbits, codes = encode(layers)
    assert len(data) == -(-nbits // 8)
    assert nbits == sum(c.total_bits for c in codes.values())
    out = decode(data, nbits, {k: v.shape for k, v in layers.items()})
    assert list(out) == list(layers)
    for k, v in layers.items():
        assert out[k].dtype == np.int64
        np.testing.assert_array_equal(out[k], v)
    return nbits, codes


def _reference_shapes() -> dict[str, tuple[int, ...]]:
    nets = {"digits": digits.build_model(seed=0), "lenet5": models.lenet5(),
            "resnet8": models.resnet8(), "sepnet": models.sepnet()}
    return {f"{net}.{name}": tuple(m.weight.shape) for net, model in nets.items()
            for name, m in weight_layers(fold_batchnorm(model.eval()))}


@pytest.mark.parametrize("density", [0.0, 0.0004, 0.01, 0.3, 1.0])
def test_every_reference_layer_round_trips(density):
    shapes = _reference_shapes()
    assert len(shapes) >= 4 + 4 + 9 + 4  # every network contributes its layers
    rng = np.random.default_rng(int(density * 1e4))
    layers = {}
    for i, (name, shape) in enumerate(shapes.items()):
        levels = rng.integers(-127, 128, size=1 + i % 9)  # 1..9 distinct values, 0 allowed
        w = rng.choice(levels, size=shape) * (rng.random(shape) < density)
        layers[name] = w.astype(np.int64)
    nbits, codes = _roundtrip(layers)
    if density == 0.0:  # only the nnz fields
        assert all(c.nnz == 0 and c.total_bits == c.header_bits for c in codes.values())


def _hostile_masks() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    out = {}
    w = np.zeros((13, 37), np.int64)
    w[[0, 5, 12], :] = rng.integers(1, 4, size=(3, 37))       # empty rows between full ones
    out["empty_rows"] = w
    for pos in (0, 480, 1000):
        one = np.zeros(1001, np.int64)
        one[pos] = -5
        out[f"single_{pos}"] = one.reshape(7, 11, 13)          # a single nonzero
    out["all_nonzero"] = rng.choice([-3, 2, 7], size=(7, 3, 5, 5))
    out["one_weight"] = np.array([[9]])
    out["one_zero"] = np.array([[0]])
    out["wide_values"] = np.array([[-32768, 32767, 0, 1]])     # 16-bit entries
    out["one_level_dense"] = np.full((3, 97), -1)
    out["long_runs"] = np.zeros((3, 100003), np.int64)
    out["long_runs"][[0, 2, 2], [99_000, 5, 100_002]] = [1, 2, 3]
    for n in (1, 2, 3, 97, 1021):
        out[f"random_{n}"] = (rng.integers(-100, 100, size=(n, 1)) * (rng.random((n, 1)) < 0.4))
    return out


def test_hostile_masks_round_trip_with_every_code():
    layers = _hostile_masks()
    _, codes = _roundtrip(layers)
    assert codes["one_zero"].total_bits == 1 and codes["one_weight"].value_bits == 0
    assert codes["all_nonzero"].position_code == "relative"
    assert codes["long_runs"].position_code == "golomb-rice"
    # every code, forced: each layer with each code and a few parameters round-trips
    import hwq.quant.joint.stream as stream

    for code in CODES:
        for param in list(stream.PARAMS[code])[:4] + [list(stream.PARAMS[code])[-1]]:
            for name, w in layers.items():
                pos = np.flatnonzero(w.reshape(-1))
                if pos.size == 0:
                    continue
                bits = stream._encode_positions(code, param, pos)
                assert bits.size == int(stream._lengths(code, pos)[
                    list(stream.PARAMS[code]).index(param)]), (code, param, name)
                r = stream._Reader(np.concatenate([bits, np.ones(5, np.uint8)]))
                got = stream._decode_positions(r, code, param, pos.size, w.size)
                np.testing.assert_array_equal(got, pos)
                assert r.at == bits.size


def test_position_codes_exact_lengths_by_hand():
    # nonzeros at 3, 5, 15 of 16: runs 3, 1, 9
    pos = np.array([3, 5, 15])
    import hwq.quant.joint.stream as stream

    # relative r: r * (3 + sum floor(z / (2**r - 1)))
    assert stream._lengths("relative", pos)[:4].tolist() == [16, 14, 12, 12]
    # Elias-Fano L: 3 L + (15 >> L) + 3
    assert stream._lengths("elias-fano", pos)[:4].tolist() == [18, 13, 12, 13]
    # Golomb-Rice k: 3 (k + 1) + sum (z >> k)
    assert stream._lengths("golomb-rice", pos)[:4].tolist() == [16, 11, 11, 13]
    assert position_bits(pos) == ("golomb-rice", 1, 11)
    # 500 random of 400k: Golomb-Rice about n * (log2(N / n) + 1.5) bits, far below the
    # floor of 8-bit relative indices (an escape every 255 positions)
    rand = np.sort(np.random.default_rng(0).choice(400_000, 500, replace=False))
    assert position_bits(rand)[0] == "golomb-rice"
    assert position_bits(rand)[2] < 500 * 12
    assert stream._lengths("relative", rand)[7] >= 400_000 // 255 * 8
    assert 9 <= position_marginal(500, 400_000) <= 11


def test_golomb_rice_never_longer_than_elias_fano():
    # sum_i floor(z_i / 2**k) <= floor(sum_i z_i / 2**k) <= p_last >> k: Golomb-Rice of the
    # runs with k costs at most Elias-Fano with L = k (Elias-Fano is taken on ties only)
    import hwq.quant.joint.stream as stream

    rng = np.random.default_rng(3)
    for _ in range(50):
        n_all = int(rng.integers(1, 5000))
        pos = np.flatnonzero(rng.random(n_all) < rng.random())
        if pos.size:
            assert (stream._lengths("golomb-rice", pos)
                    <= stream._lengths("elias-fano", pos)).all()


def test_stream_rejects_bad_input():
    data, nbits, _ = encode({"a": np.array([[0, 3, 0, -2]])})
    with pytest.raises(ValueError, match="truncated"):
        decode(data[:-1], nbits - nbits % 8 - (8 if nbits % 8 == 0 else 0), {"a": (1, 4)})
    with pytest.raises(ValueError, match="cannot hold exactly"):
        decode(data, nbits + 9, {"a": (1, 4)})
    with pytest.raises(ValueError, match="after its last layer"):
        decode(data + b"\x00", nbits + 8, {"a": (1, 4)})
    with pytest.raises(ValueError, match="at most 256 distinct nonzero values per layer, not "
                                         "300"):
        encode_layer(np.arange(1, 301).reshape(1, -1))
    with pytest.raises(ValueError, match="at most 16-bit integers, not 70000..70000"):
        encode_layer(np.array([[0, 70000]]))


# --- the compressed network file -------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_network(digits_reference, digits_data):
    from hwq.quant.api import quantize

    return quantize(digits_reference, "uniform", bits=3, data=digits_data,
                    progress=False).network


def test_compressed_file_loads_as_the_same_network(digits_network, tmp_path):
    data, nbits, codes = to_compressed_bytes(digits_network)
    assert data[:4] == b"HWQZ" and int.from_bytes(data[5:13], "little") == nbits
    back = from_compressed_bytes(data)
    assert to_bytes(back) == to_bytes(digits_network)  # bit for bit, tensors and manifest
    dense = save(digits_network, tmp_path / "n.safetensors")
    (tmp_path / "n.hwqz").write_bytes(data)
    assert to_bytes(load(tmp_path / "n.hwqz")) == to_bytes(load(dense))
    weights = [op for op in digits_network.ops if hasattr(op, "weight")]
    assert [c.weights for c in codes.values()] == [op.weight.size for op in weights]


def test_compressed_file_corruption_is_an_artifact_error(digits_network):
    data, nbits, _ = to_compressed_bytes(digits_network)
    with pytest.raises(ArtifactError, match="not a compressed hwq network"):
        from_compressed_bytes(b"XXXX" + data[4:])
    with pytest.raises(ArtifactError, match="version 9 is not supported"):
        from_compressed_bytes(data[:4] + b"\x09" + data[5:])
    flipped = bytearray(data)
    flipped[13 + 40] ^= 0x10  # a bit inside the stream
    with pytest.raises(ArtifactError):
        from_compressed_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match="truncated"):
        from_compressed_bytes(data[:13 + nbits // 16])


@pytest.mark.parametrize("name", ["hwq.quant.joint.stream", "hwq.quant.joint.kmeans",
                                  "hwq.quant.joint.knapsack", "hwq.quant.joint.encoding"])
def test_doctests(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
