"""Save and load a :class:`~hwq.ir.QuantizedNetwork` as ONE safetensors file.

Tensors are stored under ``ops.<i>.<field>`` with the smallest integer dtype that holds
them; a JSON manifest in the safetensors metadata (key ``hwq``) holds the format
version, the hwq version, the ops and their parameters, a SHA-256 of every tensor, and a
SHA-256 of the manifest itself (``manifest_sha256``, over its other fields).
Loading validates everything (the file's structure, version, tensor set, checksums,
then the network itself) and raises :class:`~hwq.errors.ArtifactError` naming the file
and the problem, so a truncated, corrupted, tampered or wrong-version file never becomes
a wrong network. Writes are atomic (temporary file + ``os.replace``). No pickle.
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
from hwq.ir import Conv2d, Flatten, Linear, MaxPool2d, QuantizedNetwork, Requant, WeightSpec

FORMAT = "hwq.QuantizedNetwork"
FORMAT_VERSION = 1
#: Manifest field holding the SHA-256 of the rest of the manifest (canonical JSON), so that
#: no change to the header goes unnoticed.
MANIFEST_DIGEST = "manifest_sha256"
_OPS = {"conv2d": Conv2d, "linear": Linear, "maxpool2d": MaxPool2d, "flatten": Flatten}
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
    tensors: dict[str, np.ndarray] = {}
    ops: list[dict[str, Any]] = []
    for i, op in enumerate(network.ops):
        entry: dict[str, Any] = {"kind": op.kind, "name": op.name}
        if isinstance(op, Conv2d | Linear):
            fields = {"weight": op.weight, "bits": op.spec.bits, "bias": op.requant.bias,
                      "M": op.requant.M, "S": op.requant.S}
            if op.spec.table is not None:
                fields["table"] = op.spec.table
            entry.update(spec=op.spec.to_manifest(), lo=op.requant.lo, hi=op.requant.hi,
                         out_scale=float(op.out_scale))
            if isinstance(op, Conv2d):
                entry.update(stride=op.stride, padding=op.padding)
            entry["tensors"] = {}
            for field_, value in fields.items():
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
    """Read and fully validate a network written by :func:`save`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No network file at {path}")
    return from_bytes(path.read_bytes(), source=str(path))


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
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{source}: network format version {version!r} is not supported by hwq "
            f"{__version__} (reads version {FORMAT_VERSION}); written by hwq "
            f"{manifest.get('hwq_version', '?')}"
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
    ops = []
    for entry in manifest["ops"]:
        kind = entry["kind"]
        if kind not in _OPS:
            raise ValueError(f"unknown op kind {kind!r}")
        if kind in ("maxpool2d", "flatten"):
            ops.append(_OPS[kind](name=entry["name"]))
            continue
        t = {f: tensors[key].astype(np.int64) for f, key in entry["tensors"].items()}
        spec = WeightSpec(kind=entry["spec"]["kind"], bits=t["bits"], table=t.get("table"),
                          table_bits=int(entry["spec"]["table_bits"]))
        rq = Requant(bias=t["bias"], M=t["M"], S=t["S"], lo=int(entry["lo"]), hi=int(entry["hi"]))
        common = dict(name=entry["name"], weight=t["weight"], spec=spec, requant=rq,
                      out_scale=float(entry["out_scale"]))
        if kind == "conv2d":
            ops.append(Conv2d(stride=int(entry["stride"]), padding=int(entry["padding"]), **common))
        else:
            ops.append(Linear(**common))
    return QuantizedNetwork(
        input_shape=tuple(manifest["input_shape"]),
        act_bits=int(manifest["act_bits"]),
        input_scale=float(manifest["input_scale"]),
        ops=ops,
        meta=manifest.get("meta", {}),
    )
