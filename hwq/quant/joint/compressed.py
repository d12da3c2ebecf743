"""The compressed network file: the weights as a sparse weight stream, the rest as safetensors.

Layout (integers little-endian)::

    b"HWQZ"  version (1 byte, 1)  stream_bits (8 bytes)  stream (ceil(stream_bits / 8) bytes)
    the network's safetensors file without its weight tensors

The stream (:mod:`hwq.quant.joint.stream`) holds the integer weights of every Conv2d/Linear
op in network order; the safetensors part is what :func:`hwq.serialize.to_bytes` writes, less
those tensors, plus a metadata entry ``hwqz`` naming them (key and shape, in stream order).
Its manifest keeps the SHA-256 of every tensor, the streamed ones included, so loading checks
the decoded weights against the digests of the original network: a file either loads as the
exact network that was saved or raises :class:`~hwq.errors.ArtifactError`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from hwq.errors import ArtifactError
from hwq.ir import QuantizedNetwork
from hwq.quant.joint.stream import LayerCode, decode, encode

__all__ = ["MAGIC", "from_compressed_bytes", "is_compressed", "load_compressed",
           "save_compressed", "stream_bytes", "to_compressed_bytes"]

MAGIC = b"HWQZ"
VERSION = 1
_PREFIX = len(MAGIC) + 1 + 8


def is_compressed(data: bytes) -> bool:
    """Whether ``data`` starts like a compressed network file."""
    return data[:len(MAGIC)] == MAGIC


def to_compressed_bytes(network: QuantizedNetwork) -> tuple[bytes, int, dict[str, LayerCode]]:
    """The file's bytes, the stream's length in bits and each weight op's record."""
    from hwq.serialize import _header_metadata, to_bytes

    data = to_bytes(network)
    meta = _header_metadata(data, "<network>")
    tensors = st_load(data)
    manifest = json.loads(meta["hwq"])
    keys = [op["tensors"]["weight"] for op in manifest["ops"] if "weight" in op["tensors"]]
    names = [op["name"] for op in manifest["ops"] if "weight" in op["tensors"]]
    streamed = {k: tensors.pop(k) for k in keys}
    stream, nbits, codes = encode(streamed)
    layout = [{"key": k, "name": n, "shape": list(streamed[k].shape)}
              for k, n in zip(keys, names, strict=True)]
    rest = st_save(tensors, metadata={"hwq": meta["hwq"], "hwqz": json.dumps(layout)})
    head = MAGIC + bytes([VERSION]) + nbits.to_bytes(8, "little")
    return head + stream + rest, nbits, {n: codes[k] for k, n in zip(keys, names, strict=True)}


def from_compressed_bytes(data: bytes, *, source: str = "<bytes>") -> QuantizedNetwork:
    """Inverse of :func:`to_compressed_bytes`, with every check of :func:`hwq.serialize.load`.

    Raises
    ------
    ArtifactError
        not a compressed network, an unknown version, a truncated or corrupted stream, or
        decoded weights that differ from the saved network's.
    """
    from hwq.serialize import _compact, _header_metadata, from_bytes

    if not is_compressed(data) or len(data) < _PREFIX:
        raise ArtifactError(f"{source}: not a compressed hwq network (no {MAGIC!r} header)")
    if data[len(MAGIC)] != VERSION:
        raise ArtifactError(f"{source}: compressed network version {data[len(MAGIC)]} is not "
                            f"supported (reads version {VERSION})")
    nbits = int.from_bytes(data[len(MAGIC) + 1:_PREFIX], "little")
    end = _PREFIX + math.ceil(nbits / 8)
    if end > len(data):
        raise ArtifactError(f"{source}: truncated (a stream of {nbits} bits, file of "
                            f"{len(data)} bytes)")
    rest = data[end:]
    meta = _header_metadata(rest, source)
    try:
        tensors = st_load(rest)
        layout: Any = json.loads(meta.get("hwqz", "null"))
    except (SafetensorError, ValueError, OSError) as exc:
        raise ArtifactError(f"{source}: corrupted network part ({exc})") from None
    if not isinstance(layout, list) or not all(
            isinstance(e, dict) and isinstance(e.get("key"), str)
            and isinstance(e.get("shape"), list)
            and all(isinstance(d, int) and d >= 0 for d in e["shape"]) for e in layout):
        raise ArtifactError(f"{source}: field 'hwqz' must list the streamed tensors "
                            "(key and shape)")
    try:
        weights = decode(data[_PREFIX:end], nbits, {e["key"]: e["shape"] for e in layout})
    except ValueError as exc:
        raise ArtifactError(f"{source}: {exc}") from None
    tensors.update({k: _compact(v) for k, v in weights.items()})
    return from_bytes(st_save(tensors, metadata={"hwq": meta["hwq"]}), source=source)


def save_compressed(network: QuantizedNetwork, path: str | os.PathLike
                    ) -> tuple[Path, int, dict[str, LayerCode]]:
    """Write ``network`` as a compressed file atomically; returns the path, the stream's
    length in bits and the per-layer records."""
    from hwq.serialize import atomic_write

    path = Path(path)
    data, nbits, codes = to_compressed_bytes(network)
    atomic_write(path, data)
    return path, nbits, codes


def load_compressed(path: str | os.PathLike) -> QuantizedNetwork:
    """Read and fully validate a file written by :func:`save_compressed`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No network file at {path}")
    return from_compressed_bytes(path.read_bytes(), source=str(path))


def stream_bytes(nbits: int) -> int:
    """Bytes the stream of ``nbits`` bits takes in the file."""
    return math.ceil(nbits / 8)

