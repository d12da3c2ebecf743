"""The :class:`Program`: what the layout compiler produces and the core runs.

A Program holds the packed memory images of a core (layer descriptors, weight micro-ops,
requant parameters; see :mod:`hwq.layout.words`), where the input goes and where the output
comes from in the activation memory, and per-layer facts (micro-op counts, tile masks,
model cycles). It is tied to one :class:`~hwq.config.CoreConfig` by its fingerprint.

Binary container (``Program.to_bytes``), all integers little-endian::

    b"HWQPROG\\0" | u32 format version | u32 header length | header (JSON, UTF-8)
    | sections (uint32 words of each image, in header order) | u32 CRC-32 of all before

The header lists every section with its shape and its own CRC-32. Reading checks the magic,
the version, both CRCs and the shapes, and raises :class:`~hwq.errors.ArtifactError`.

This module is pure Python and NumPy (the host runtime imports it).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwq import __version__
from hwq.config import CoreConfig
from hwq.errors import ArtifactError
from hwq.layout.words import CoreWords, core_words
from hwq.serialize import atomic_write

MAGIC = b"HWQPROG\0"
FORMAT = "hwq.Program"
FORMAT_VERSION = 2
#: version 2: descriptors carry stride_h, stride_w, pad_t, pad_l (graph IR); matmuls may
#: read several tensors
#: Images of a Program, in container order (the activation memory holds no image).
IMAGES = ("desc", "weight", "param")


@dataclass(frozen=True)
class Tensor:
    """Where a ``(C, H, W)`` tensor lives in the activation memory.

    Word ``base + (h * W + w) * ct + t`` holds channels ``t*S .. t*S + S-1`` of position
    ``(h, w)``; ``ct = ceil(C / S)``. ``shape`` is the network's view of it (``(C, H, W)``,
    ``(K,)`` for a linear input or output, ``(C*H*W,)`` after a trailing flatten).
    """

    base: int
    chw: tuple[int, int, int]
    ct: int
    shape: tuple[int, ...]

    @property
    def words(self) -> int:
        return self.chw[1] * self.chw[2] * self.ct

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "chw": list(self.chw), "ct": self.ct,
                "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tensor:
        return cls(base=int(d["base"]), chw=tuple(d["chw"]), ct=int(d["ct"]),
                   shape=tuple(d["shape"]))


@dataclass
class Program:
    """A compiled network for one core configuration.

    Attributes
    ----------
    config : CoreConfig
    images : dict of str to uint32 array ``(words, chunks)``
        ``desc``, ``weight`` and ``param`` memory images, loaded from address 0.
    input, output : Tensor
        the network input and output in the activation memory.
    layers : list of dict
        one per descriptor: ``name``, ``kind`` (``"matmul"``/``"pool"``), ``op`` (the IR op
        kind), ``cycles`` (model), and for matmul layers ``words`` (micro-ops per group),
        ``positions``, ``w_base``, ``w_words``, ``p_base``, ``groups``, ``k_tiles``,
        ``tile_mask`` (groups x k_tiles, True = stored, False = all-zero and skipped) and
        ``tile_bits`` (bit_serial: each tile's bit width).
    meta : dict
        JSON facts (network name, generator, ...).
    """

    config: CoreConfig
    images: dict[str, np.ndarray]
    input: Tensor
    output: Tensor
    layers: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def words(self) -> CoreWords:
        return core_words(self.config)

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint()

    def cycles(self) -> int:
        """Model cycles of one inference (all layers plus the run overhead)."""
        from hwq.golden.cycles import OVERHEADS
        return sum(int(layer["cycles"]) for layer in self.layers) + OVERHEADS.run

    # ---------------------------------------------------------------- activations
    def pack_input(self, x: object) -> np.ndarray:
        """Integer inputs ``(N, *input.shape)`` -> act words ``(N, input.words, chunks)``."""
        return _pack_tensor(self, self.input, x, "Network input")

    def unpack_output(self, words: np.ndarray) -> np.ndarray:
        """Act words ``(N, output.words, chunks)`` -> outputs ``(N, *output.shape)`` int64."""
        t = self.output
        w = np.asarray(words, dtype=np.uint32)
        if w.ndim == 2:
            w = w[None]
        lay = self.words.act
        n = w.shape[0]
        if w.shape[1:] != (t.words, lay.chunks):
            raise ValueError(f"Output words must have shape (N, {t.words}, {lay.chunks}), "
                             f"not {w.shape}")
        a = lay.unpack(w.reshape(-1, lay.chunks))["a"].reshape(n, t.chw[1], t.chw[2], -1)
        c, h, wd = t.chw
        chw = a[..., :c].transpose(0, 3, 1, 2)
        return chw.reshape(n, *t.shape)

    # ---------------------------------------------------------------- container
    def to_bytes(self) -> bytes:
        sections = []
        blobs = []
        offset = 0
        for name in IMAGES:
            img = np.ascontiguousarray(self.images[name], dtype="<u4")
            blob = img.tobytes()
            sections.append({"name": name, "words": int(img.shape[0]),
                             "chunks": int(img.shape[1]), "offset": offset,
                             "nbytes": len(blob), "crc32": zlib.crc32(blob)})
            blobs.append(blob)
            offset += len(blob)
        header = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "hwq_version": __version__,
            "config": self.config.to_dict(), "fingerprint": self.fingerprint,
            "input": self.input.to_dict(), "output": self.output.to_dict(),
            "layers": self.layers, "meta": self.meta, "sections": sections,
        }
        hb = json.dumps(header, sort_keys=True, default=_json_default).encode()
        body = MAGIC + struct.pack("<II", FORMAT_VERSION, len(hb)) + hb + b"".join(blobs)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> Program:
        """Inverse of :meth:`to_bytes`; every structure and CRC is checked."""
        if len(data) < len(MAGIC) + 12 or data[:len(MAGIC)] != MAGIC:
            raise ArtifactError(f"{source}: not an hwq Program (bad magic)")
        version, hlen = struct.unpack_from("<II", data, len(MAGIC))
        if version != FORMAT_VERSION:
            raise ArtifactError(f"{source}: Program format version {version} is not supported "
                                f"by hwq {__version__} (reads version {FORMAT_VERSION})")
        (crc,) = struct.unpack_from("<I", data, len(data) - 4)
        if zlib.crc32(data[:-4]) != crc:
            raise ArtifactError(f"{source}: CRC mismatch (the Program is truncated or corrupted)")
        start = len(MAGIC) + 8
        try:
            header = json.loads(data[start:start + hlen])
            config = CoreConfig.from_dict(header["config"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{source}: corrupted Program header ({exc})") from None
        if header.get("format") != FORMAT:
            raise ArtifactError(f"{source}: not an hwq Program (format {header.get('format')!r})")
        if header.get("fingerprint") != config.fingerprint():
            raise ArtifactError(f"{source}: config fingerprint does not match the config")
        payload = data[start + hlen:-4]
        words = core_words(config)
        images = {}
        for sec in header["sections"]:
            blob = payload[sec["offset"]:sec["offset"] + sec["nbytes"]]
            if len(blob) != sec["nbytes"] or zlib.crc32(blob) != sec["crc32"]:
                raise ArtifactError(f"{source}: section {sec['name']!r} is corrupted")
            if sec["chunks"] != words.memories[sec["name"]].chunks:
                raise ArtifactError(f"{source}: section {sec['name']!r} has {sec['chunks']} "
                                    f"chunks per word, the config needs "
                                    f"{words.memories[sec['name']].chunks}")
            images[sec["name"]] = (np.frombuffer(blob, dtype="<u4")
                                   .reshape(sec["words"], sec["chunks"]).astype(np.uint32))
        if set(images) != set(IMAGES):
            raise ArtifactError(f"{source}: Program sections {sorted(images)} are not "
                                f"{sorted(IMAGES)}")
        return cls(config=config, images=images, input=Tensor.from_dict(header["input"]),
                   output=Tensor.from_dict(header["output"]), layers=header["layers"],
                   meta=header.get("meta", {}))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the container atomically; returns the path."""
        path = Path(path)
        atomic_write(path, self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Program:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No Program file at {path}")
        return cls.from_bytes(path.read_bytes(), source=str(path))

    def check_config(self, config: CoreConfig) -> None:
        """Raise ``ValueError`` unless this Program was built for ``config``."""
        if config.fingerprint() != self.fingerprint:
            raise ValueError(f"Program was built for core {self.fingerprint} "
                             f"({self.config.pe}, lanes {self.config.lanes}, simd "
                             f"{self.config.simd}), not for core {config.fingerprint()}")

    # ---------------------------------------------------------------- $readmemh
    def readmemh(self) -> dict[str, str]:
        """``$readmemh`` text of each image: one word per line, hex, most significant first."""
        out = {}
        for name in IMAGES:
            lay = self.words.memories[name]
            digits = -(-lay.width // 4)
            out[name] = "".join(f"{v:0{digits}x}\n" for v in lay.to_ints(self.images[name]))
        return out

    def write_readmemh(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write ``<folder>/hwq_<image>.hex`` for every image; returns the paths."""
        folder = Path(folder)
        paths = {}
        for name, text in self.readmemh().items():
            paths[name] = folder / f"hwq_{name}.hex"
            atomic_write(paths[name], text.encode())
        return paths


def _pack_tensor(program: Program, t: Tensor, x: object, what: str) -> np.ndarray:
    xa = np.asarray(x)
    if xa.dtype.kind not in "iu":
        raise TypeError(f"{what} must be an integer array, not dtype {xa.dtype}")
    xa = xa.astype(np.int64)
    if xa.shape[1:] != t.shape:
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, t.shape))}), "
                         f"not {xa.shape}")
    n = xa.shape[0]
    c, h, w = t.chw
    s = program.config.simd
    a = np.zeros((n, h, w, t.ct * s), dtype=np.int64)
    a[..., :c] = xa.reshape(n, c, h, w).transpose(0, 2, 3, 1)
    lay = program.words.act
    return lay.pack(n * t.words, a=a.reshape(-1, s)).reshape(n, t.words, lay.chunks)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
