"""Save and load a :class:`~hwq.ir.QuantizedNetwork` as ONE safetensors file.

Tensors are stored under ``ops.<i>.<field>`` with the smallest integer dtype that holds
them; a JSON manifest in the safetensors metadata (key ``hwq``) holds the format
version, the hwq version, the ops (kind, name, the tensors they read, their parameters as
each op kind defines them: :meth:`hwq.ir.Op.manifest`), a SHA-256 of every tensor, and a
SHA-256 of the manifest itself (``manifest_sha256``, over its other fields).
Loading validates everything (the file's structure, version, tensor set, checksums, every
manifest field against its schema with no coercion (:mod:`hwq.ir.schema`), then the network
itself) and raises :class:`~hwq.errors.ArtifactError` naming the file, the field, the value
and what is allowed, so a truncated, corrupted, tampered or wrong-version file never
becomes a wrong network. Writes are atomic (temporary file + ``os.replace``). No pickle.

Format versions: 2 is the graph IR (every op names its inputs); files of version 1 (wave 1,
a chain of conv2d, linear, maxpool2d 2x2 and flatten) are migrated on load.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from hwq import __version__
from hwq.errors import ArtifactError
from hwq.ir import OPS, QuantizedNetwork
from hwq.ir.schema import Fields, SchemaError

FORMAT = "hwq.QuantizedNetwork"
FORMAT_VERSION = 2
#: Older versions that load (migrated).
MIGRATED_VERSIONS = (1,)
#: Manifest field holding the SHA-256 of the rest of the manifest (canonical JSON), so that
#: no change to the header goes unnoticed.
MANIFEST_DIGEST = "manifest_sha256"
#: safetensors dtypes of the tensors a network holds (what :func:`_compact` writes).
TENSOR_DTYPES = ("I8", "I16", "I32", "I64")


def _compact(a: np.ndarray) -> np.ndarray:
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if a.size == 0 or (info.min <= int(a.min()) and int(a.max()) <= info.max):
            return np.ascontiguousarray(a.astype(dtype))
    raise AssertionError("unreachable: int64 holds every IR tensor")


def _digest(a: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def to_bytes(network: QuantizedNetwork) -> bytes:
    """The safetensors bytes of ``network`` (what :func:`save` writes)."""
    if not isinstance(network, QuantizedNetwork):
        raise TypeError(f"Network must be a hwq.ir.QuantizedNetwork, not {type(network).__name__}")
    network.validate()
    if not isinstance(network, QuantizedNetwork):
        raise TypeError(f"Network must be a QuantizedNetwork, not {type(network).__name__}")
    tensors: dict[str, np.ndarray] = {}
    ops: list[dict[str, Any]] = []
    for i, op in enumerate(network.ops):
        fields, arrays = op.manifest()
        entry: dict[str, Any] = {"kind": op.kind, "name": op.name, "inputs": list(op.inputs),
                                 **fields, "tensors": {}}
        for field_, value in arrays.items():
            key = f"ops.{i}.{field_}"
            tensors[key] = _compact(np.asarray(value))
            entry["tensors"][field_] = key
        ops.append(entry)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hwq_version": __version__,
        "input_shape": list(network.input_shape),
        "act_bits": network.act_bits,
        "input_scale": float(network.input_scale),
        "meta": network.meta,
        "ops": ops,
        "checksums": {k: _digest(v) for k, v in tensors.items()},
    }
    manifest[MANIFEST_DIGEST] = _manifest_digest(manifest)
    return st_save(tensors, metadata={"hwq": json.dumps(manifest, sort_keys=True)})


def _manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the manifest without its own digest."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save(network: QuantizedNetwork, path: str | os.PathLike) -> Path:
    """Write ``network`` to ``path`` atomically; returns the path."""
    path = Path(path)
    data = to_bytes(network)
    atomic_write(path, data)
    return path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block:
    parallel processes and threads building the same cached artifact take turns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def umask() -> int:
    """The process's file mode creation mask (read without changing it where Linux allows)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    The file gets the permissions of an ordinary new file (``0o666`` less the umask), not the
    temporary file's ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_json(text: bytes | str, source: str, what: str) -> Any:
    """``json.loads`` for an artifact's header: any failure is one :class:`ArtifactError`
    line naming ``source`` and ``what`` (invalid UTF-8 or JSON, or nesting too deep for
    Python's parser)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ArtifactError(f"{source}: corrupted {what} (JSON nested deeper than Python's "
                            "parser allows)") from None
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise ArtifactError(f"{source}: corrupted {what} ({exc})") from None


def load(path: str | os.PathLike) -> QuantizedNetwork:
    """Read and fully validate a network written by :func:`save` (or a compressed one,
    :func:`hwq.quant.joint.compressed.save_compressed`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No network file at {path}")
    data = path.read_bytes()
    if data[:4] == b"HWQZ":  # a compressed network (hwq quantize --compressed)
        from hwq.quant.joint.compressed import from_compressed_bytes

        return from_compressed_bytes(data, source=str(path))
    return from_bytes(data, source=str(path))


def _header_metadata(data: bytes, source: str) -> dict[str, str]:
    if len(data) < 8:
        raise ArtifactError(f"{source}: not a safetensors file (only {len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if data[8:9] != b"{":  # safetensors: an 8-byte length, then a JSON object
        raise ArtifactError(f"{source}: not a safetensors file (no JSON header after the "
                            "8-byte length)")
    if n > len(data) - 8:
        raise ArtifactError(f"{source}: truncated (header of {n} bytes, file of {len(data)})")
    header = parse_json(data[8 : 8 + n], source, "safetensors header")
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or "hwq" not in meta:
        raise ArtifactError(f"{source}: not an hwq network (no 'hwq' manifest in the metadata)")
    for key, entry in header.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if key != "__metadata__" and dtype not in TENSOR_DTYPES:
            raise ArtifactError(f"{source}: tensor {key!r} has dtype {dtype!r}; an hwq network "
                                f"holds only {', '.join(TENSOR_DTYPES)} tensors")
    return meta


def from_bytes(data: bytes, *, source: str = "<bytes>") -> QuantizedNetwork:
    """Inverse of :func:`to_bytes`, with every check of :func:`load`."""
    meta = _header_metadata(data, source)
    manifest = parse_json(meta["hwq"], source, "manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{source}: not an hwq network (format "
                            f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION and version not in MIGRATED_VERSIONS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ArtifactError(
            f"{source}: network format version {version!r} is not supported by hwq "
            f"{__version__} (reads versions {', '.join(map(str, MIGRATED_VERSIONS))} and "
            f"{FORMAT_VERSION}; written by hwq {manifest.get('hwq_version', '?')}): "
            + ("a newer hwq wrote it: upgrade hwq" if newer else
               "re-create the network with `hwq quantize`")
        )
    if manifest.get(MANIFEST_DIGEST) != _manifest_digest(manifest):
        raise ArtifactError(f"{source}: manifest checksum mismatch (the header was modified "
                            "or corrupted)")
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise ArtifactError(f"{source}: corrupted or truncated tensor data ({exc})") from None
    checksums = manifest.get("checksums", {})
    if set(checksums) != set(tensors):
        missing = sorted(set(checksums) - set(tensors))
        extra = sorted(set(tensors) - set(checksums))
        raise ArtifactError(f"{source}: tensor set does not match the manifest "
                            f"(missing {missing}, unexpected {extra})")
    for key, digest in checksums.items():
        if _digest(tensors[key]) != digest:
            raise ArtifactError(f"{source}: checksum mismatch in tensor {key!r} "
                                "(the file was modified or corrupted)")
    try:
        return _build(manifest, tensors)
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{source}: invalid network: {exc}") from None


def _build(manifest: dict[str, Any], tensors: dict[str, np.ndarray]) -> QuantizedNetwork:
    m = Fields(manifest, "manifest")
    for key in ("format", "format_version", "hwq_version", "checksums", MANIFEST_DIGEST):
        m.raw(key)
    version = manifest["format_version"]
    shape = m.ints("input_shape", 1, 1 << 30, lengths=(1, 3))
    act_bits = m.int("act_bits", 2, 16)
    input_scale = m.float("input_scale")
    meta = m.raw("meta", {})
    if not isinstance(meta, dict):
        raise SchemaError(f"manifest: field 'meta': {type(meta).__name__} is not allowed "
                          "(a JSON object)")
    entries = m.list("ops")
    if not entries:
        raise SchemaError("manifest: field 'ops': [] is not allowed (a list of at least one op)")
    m.done()
    used: set[str] = set()
    ops = []
    for i, entry in enumerate(entries):
        if version == 1:
            entry = _migrate_v1(entry, f"ops[{i}]")
        f = Fields(entry, f"ops[{i}]")
        name = f.str("name")
        f.where = f"ops[{i}] {name!r}"
        kind = f.str("kind", tuple(OPS))
        inputs = f.strs("inputs")
        refs = f.object("tensors")
        arrays = {}
        for field_ in list(refs.data):
            key = refs.str(field_)
            if key not in tensors:
                raise SchemaError(f"{f.where}: tensor {key!r} of field {field_!r} is not in "
                                  "the file")
            if key in used:
                raise SchemaError(f"{f.where}: tensor {key!r} is used twice")
            used.add(key)
            t = tensors[key]
            if t.dtype.kind not in "iu":
                raise SchemaError(f"{f.where}: tensor {key!r} has dtype {t.dtype}; hwq stores "
                                  "integers only (int8/16/32/64)")
            arrays[field_] = t.astype(np.int64)
        refs.done()
        arrays = _Arrays(arrays, f.where)
        ops.append(OPS[kind].from_manifest(name, inputs, f, arrays))
        f.done()
    unused = sorted(set(tensors) - used)
    if unused:
        raise SchemaError(f"tensor(s) {unused} belong to no op")
    return QuantizedNetwork(input_shape=shape, act_bits=act_bits, input_scale=input_scale,
                            ops=ops, meta=meta)


class _Arrays(dict):
    """An op's tensors by field; a missing one is a :class:`SchemaError` naming it."""

    def __init__(self, arrays: dict[str, np.ndarray], where: str) -> None:
        super().__init__(arrays)
        self.where = where

    def __missing__(self, key: str) -> np.ndarray:
        raise SchemaError(f"{self.where}: tensor field {key!r} is missing")


def _migrate_v1(entry: object, where: str) -> object:
    """A version-1 op entry (a chain: no inputs; square kernels, one stride and padding,
    2x2/2 max pools) in the version-2 form."""
    if not isinstance(entry, dict):
        return entry
    e = dict(entry, inputs=[])
    kind = e.get("kind")
    if kind in ("maxpool2d", "flatten") and "tensors" not in e:
        e["tensors"] = {}
    if kind == "maxpool2d":
        e.update(kernel=[2, 2], stride=[2, 2], padding=[0, 0, 0, 0])
    elif kind == "conv2d":
        s, p = e.pop("stride", None), e.pop("padding", None)
        e.update(stride=[s, s], padding=[p] * 4, dilation=[1, 1], groups=1)
    return e
