"""The :class:`Program`: what the layout compiler produces and the core runs.

A Program holds the packed memory images of a core (layer descriptors, weight micro-ops,
requant parameters; see :mod:`hwq.layout.words`), where the input goes and where the output
comes from in the activation memory, and per-layer facts (micro-op counts, tile masks,
model cycles). It is tied to one :class:`~hwq.config.CoreConfig` by its fingerprint.

Binary container (``Program.to_bytes``), all integers little-endian::

    b"HWQPROG\\0" | u32 format version | u32 header length | header (JSON, UTF-8)
    | sections (uint32 words of each image, in header order) | u32 CRC-32 of all before

The header lists every section with its shape and its own CRC-32. Reading checks the magic,
the version, both CRCs, and the header against its schema (every field present and known, of
its JSON type without coercion, in range; every image within its memory's depth, the input
and output within the activation memory), and raises :class:`~hwq.errors.ArtifactError`
naming the file, the field, the value and what is allowed.

This module is pure Python and NumPy (the host runtime imports it).
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from hwq import __version__
from hwq.config import DSP_KINDS, PE_TYPES, CoreConfig
from hwq.errors import ArtifactError
from hwq.layout.words import EXT_SRC_BITS, CoreWords, core_words
from hwq.serialize import atomic_write, parse_json

MAGIC = b"HWQPROG\0"
FORMAT = "hwq.Program"
FORMAT_VERSION = 9
#: version 2: descriptors carry stride_h, stride_w, pad_t, pad_l (graph IR); matmuls may
#: read several tensors. Version 3: the input tensor may be stored in im2col order
#: (``input.window``, see :class:`Window`). Version 5: activation loads and stores over
#: ``m_axi``. Version 6: the network input and output may live in external memory
#: (``Tensor.external``). Version 7: a max pool may be fused into a matmul's descriptor (``fuse``,
#: ``tap_sh``, ``tap_sw`` on cores with ``pool_words``; the layer's ``fused`` names the pool
#: op). Version 8: a core with ``pack`` (K packing) has micro-ops that read two
#: activation words (``off2``, ``u2``, ``v2``, ``split``; :mod:`hwq.layout.kpack`).
#: Version 9: a core with ``depthwise`` has the micro-op field ``hi`` and the descriptor
#: fields ``dw``, ``w_base2``, ``w_last2`` (:mod:`hwq.layout.dwmode`).
#: Images of a Program, in container order (the activation memory holds no image).
IMAGES = ("desc", "weight", "param")
#: Sections of the container: the memory images, then the external memory image (weight
#: micro-ops the core reads over ``m_axi``; 0 words when every weight is on chip).
SECTIONS = (*IMAGES, "ext")
#: Fields of the JSON header, of each entry of its ``sections``, and of each of its
#: ``layers`` (required, then the optional facts of a matmul layer; see :class:`Program`).
HEADER_FIELDS = ("format", "format_version", "hwq_version", "config", "fingerprint", "input",
                 "output", "layers", "meta", "sections")
SECTION_FIELDS = ("name", "words", "chunks", "offset", "nbytes", "crc32")
LAYER_FIELDS = ("name", "kind", "op", "cycles")
LAYER_FACTS = ("steps", "positions", "w_base", "w_words", "p_base", "groups", "k_tiles",
               "tile_mask", "tile_bits", "tile", "wait", "ld_words", "ld_src", "ld_act",
               "st_words", "st_dst", "rows", "fused", "dw_tile")
LAYER_LISTS = ("steps", "tile_mask", "tile_bits", "tile", "rows")


@dataclass(frozen=True)
class Window:
    """The im2col order of a stored network input (since format version 3).

    The host stores a ``(C, H, W)`` input as the windows of the first layer's kernel: a
    tensor ``(KH * KW * C, OH, OW)`` whose channel ``(u * KW + v) * C + c`` at output
    position ``(i, j)`` is ``x[c, i*SH + u*DH - PT, j*SW + v*DW - PL]`` (0 in the padding).
    The first layer then runs as a 1x1 convolution whose ``simd`` lanes are filled by taps
    and channels together: ``ceil(KH * KW * C / simd)`` micro-ops per output group instead of
    ``KH * KW * ceil(C / simd)``.
    """

    chw: tuple[int, int, int]                 # the network input (C, H, W)
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]        # top, bottom, left, right
    dilation: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"chw": list(self.chw), "kernel": list(self.kernel),
                "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Window:
        return cls(chw=tuple(d["chw"]), kernel=tuple(d["kernel"]), stride=tuple(d["stride"]),
                   padding=tuple(d["padding"]), dilation=tuple(d["dilation"]))

    def out_hw(self) -> tuple[int, int]:
        """Output positions ``(OH, OW)`` of the window walk."""
        _, h, w = self.chw
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        t, b, l, r = self.padding
        return ((h + t + b - dh * (kh - 1) - 1) // sh + 1,
                (w + l + r - dw * (kw - 1) - 1) // sw + 1)

    def stored_chw(self) -> tuple[int, int, int]:
        """``(KH * KW * C, OH, OW)``: the tensor as stored."""
        return (self.kernel[0] * self.kernel[1] * self.chw[0], *self.out_hw())

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Inputs ``(N, C, H, W)`` -> windows ``(N, OH, OW, KH * KW * C)`` (int64)."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        t, b, l, r = self.padding
        oh, ow = self.out_hw()
        xp = np.pad(np.asarray(x, dtype=np.int64), ((0, 0), (0, 0), (t, b), (l, r)))
        taps = [xp[:, :, u * dh:u * dh + sh * (oh - 1) + 1:sh,
                   v * dw:v * dw + sw * (ow - 1) + 1:sw]
                for u in range(kh) for v in range(kw)]           # each (N, C, OH, OW)
        return np.stack(taps, axis=1).transpose(0, 3, 4, 1, 2).reshape(x.shape[0], oh, ow, -1)


@dataclass(frozen=True)
class Tensor:
    """Where a ``(C, H, W)`` tensor lives in the activation memory.

    Word ``base + (h * W + w) * ct + t`` holds channels ``t*S .. t*S + S-1`` of position
    ``(h, w)``; ``ct = ceil(C / S)``. ``shape`` is the network's view of it (``(C, H, W)``,
    ``(K,)`` for a linear input or output, ``(C*H*W,)`` after a trailing flatten).
    ``window``: the network input stored in im2col order (``chw`` is then the stored
    ``(KH * KW * C, OH, OW)``; see :class:`Window`), or None. ``external``: the tensor lives
    in external memory from that external activation word on (``base`` is then 0; each word
    ``ext_act_beats`` beats, :mod:`hwq.layout.words`), or None.
    """

    base: int
    chw: tuple[int, int, int]
    ct: int
    shape: tuple[int, ...]
    window: Window | None = None
    external: int | None = None

    @property
    def words(self) -> int:
        return self.chw[1] * self.chw[2] * self.ct

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "chw": list(self.chw), "ct": self.ct,
                "shape": list(self.shape),
                "window": None if self.window is None else self.window.to_dict(),
                "external": self.external}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tensor:
        return cls(base=int(d["base"]), chw=tuple(d["chw"]), ct=int(d["ct"]),
                   shape=tuple(d["shape"]),
                   window=None if d["window"] is None else Window.from_dict(d["window"]),
                   external=None if d["external"] is None else int(d["external"]))


@dataclass
class Program:
    """A compiled network for one core configuration.

    Attributes
    ----------
    config : CoreConfig
    images : dict of str to uint32 array ``(words, chunks)``
        ``desc``, ``weight`` and ``param`` memory images, loaded from address 0, and
        ``ext``: the external memory image (:mod:`hwq.layout.words`; empty when every
        weight is on chip; given as absent, it is made empty).
    input, output : Tensor
        the network input and output in the activation memory.
    layers : list of dict
        one per descriptor: ``name``, ``kind`` (``"matmul"``/``"pool"``), ``op`` (the IR op
        kind), ``cycles`` (model), and for matmul layers ``steps`` (micro-ops per group),
        ``positions``, ``w_base``, ``w_words``, ``p_base``, ``groups``, ``k_tiles``,
        ``tile_mask`` (groups x k_tiles, True = stored, False = all-zero and skipped) and
        ``tile_bits`` (bit_serial: each tile's bit width); ``fused``: the max pool op run in
        the matmul's write-back (its ``positions`` are then the conv positions of the pool
        windows, and the pool has no layer of its own). With external weights a layer is
        cut into descriptors of whole output-channel groups (``tile``: first and last
        group + 1), and each descriptor has ``wait`` (it waits for the load in flight),
        ``ld_words`` and ``ld_src`` (the load it starts); a descriptor of kind ``"load"``
        only loads. ``cycles`` is then the descriptor's cycles when it never waits
        (:func:`hwq.golden.memory.schedule` adds the waits). With activations in external
        memory (:mod:`hwq.layout.acttiles`) a tiled layer's descriptors have ``rows`` (its
        first and last output row + 1), a load of kind ``"load"`` has ``ld_act``, and a
        store (kind ``"store"``: ``st_words``, ``st_dst``) counts its time at latency 1.
    meta : dict
        JSON facts (network name, generator, ...).
    """

    config: CoreConfig
    images: dict[str, np.ndarray]
    input: Tensor
    output: Tensor
    layers: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "ext" not in self.images:
            self.images = {**self.images, "ext": np.zeros(
                (0, core_words(self.config).ext_chunks), np.uint32)}

    @property
    def external_bytes(self) -> int:
        """Bytes of the external memory image (what one inference reads over ``m_axi``)."""
        return 4 * int(self.images["ext"].size)

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
        for name in SECTIONS:
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
        if start + hlen > len(data) - 4:
            raise ArtifactError(f"{source}: truncated (header of {hlen} bytes, "
                                f"{len(data) - 4 - start} after the header length)")
        header = parse_json(data[start:start + hlen], source, "Program header")
        payload = data[start + hlen:-4]
        config = _HeaderCheck(source).check(header, len(payload))
        images = {}
        for sec in header["sections"]:
            blob = payload[sec["offset"]:sec["offset"] + sec["nbytes"]]
            if zlib.crc32(blob) != sec["crc32"]:
                raise ArtifactError(f"{source}: section {sec['name']!r} is corrupted")
            images[sec["name"]] = (np.frombuffer(blob, dtype="<u4")
                                   .reshape(sec["words"], sec["chunks"]).astype(np.uint32))
        return cls(config=config, images=images, input=Tensor.from_dict(header["input"]),
                   output=Tensor.from_dict(header["output"]), layers=header["layers"],
                   meta=header["meta"])

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
            mine, theirs = self.config.to_dict(), config.to_dict()
            differ = ", ".join(f"{k} {mine[k]!r} (the core has {theirs[k]!r})"
                               for k in mine if k != "dsp" and mine[k] != theirs[k])
            raise ValueError(f"Program was built for core {self.fingerprint}, not for core "
                             f"{config.fingerprint()}: it needs {differ}")

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


class _Shown(str):
    """A value shown as it is in a message (no quotes)."""

    def __repr__(self) -> str:
        return str(self)


_MISSING = _Shown("missing")


class _HeaderCheck:
    """The Program header against its schema: every field present, known, of its type and
    in its range; images and tensors within the config's memories. One message template:
    ``"<file>: Program header field <field> must be <allowed>, not <value>"``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, value: object, allowed: str) -> ArtifactError:
        text = repr(value)
        if len(text) > 80:
            text = text[:77] + "..."
        what = f"field {field}" if field else "(the JSON text)"
        return ArtifactError(f"{self.source}: Program header {what} must be {allowed}, "
                             f"not {text}")

    def record(self, obj: object, where: str, required: tuple[str, ...],
               optional: tuple[str, ...] = ()) -> dict[str, Any]:
        """``obj`` as a dict with every ``required`` key and no key outside both lists."""
        if not isinstance(obj, dict):
            raise self.fail(where, obj, "a JSON object")
        for key in required:
            if key not in obj:
                raise self.fail(_join(where, key), _MISSING, "present")
        known = required + optional
        for key in obj:
            if key not in known:
                raise self.fail(_join(where, key), obj[key],
                                f"left out (the fields are {', '.join(known)})")
        return obj

    def integer(self, obj: dict, key: str, where: str, lo: int = 0, hi: int | None = None,
                allowed: str | None = None) -> int:
        """``obj[key]``, a JSON integer (not a bool, float or string) in ``lo..hi``."""
        value = obj[key]
        if type(value) is not int or value < lo or (hi is not None and value > hi):
            raise self.fail(_join(where, key), value, allowed or (
                f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"))
        return value

    def typed(self, obj: dict, key: str, where: str, kind: type) -> Any:
        value = obj[key]
        if type(value) is not kind:
            name = {str: "a string", dict: "a JSON object", list: "a JSON list"}[kind]
            raise self.fail(_join(where, key), value, name)
        return value

    def check(self, header: object, payload_bytes: int) -> CoreConfig:
        """Check ``header``; return its config."""
        if isinstance(header, dict) and header.get("format", FORMAT) != FORMAT:
            raise ArtifactError(f"{self.source}: not an hwq Program (format "
                                f"{header['format']!r})")
        h = self.record(header, "", HEADER_FIELDS)
        self.integer(h, "format_version", "", FORMAT_VERSION, FORMAT_VERSION,
                     f"{FORMAT_VERSION} (the version hwq {__version__} reads)")
        self.typed(h, "hwq_version", "", str)
        self.typed(h, "meta", "", dict)
        config = self.config(h["config"])
        if h["fingerprint"] != config.fingerprint():
            raise self.fail("fingerprint", h["fingerprint"],
                            f"{config.fingerprint()!r}, the fingerprint of the config")
        for name in ("input", "output"):
            self.tensor(h[name], name, config)
        self.sections(h["sections"], config, payload_bytes)
        layers = self.typed(h, "layers", "", list)
        descs = next(s["words"] for s in h["sections"] if s["name"] == "desc")
        if len(layers) != descs:
            raise self.fail("layers", _Shown(f"{len(layers)} layers"),
                            f"one layer per descriptor ({descs})")
        for i, layer in enumerate(layers):
            self.layer(layer, f"layers[{i}]")
        return config

    def config(self, obj: object) -> CoreConfig:
        d = self.record(obj, "config", tuple(f.name for f in fields(CoreConfig)))
        for key, choices in (("pe", PE_TYPES), ("dsp", DSP_KINDS)):
            if not isinstance(d[key], str) or d[key] not in choices:
                raise self.fail(f"config.{key}", d[key], f"one of {', '.join(choices)}")
        probe = CoreConfig(pe=d["pe"])
        for key in CoreConfig.INT_FIELDS:
            self.integer(d, key, "config", *probe.int_range(key))
        for key in ("pack", "depthwise"):
            if type(d[key]) is not bool:
                raise self.fail(f"config.{key}", d[key], "true or false")
        try:
            return CoreConfig.from_dict(d)
        except ValueError as exc:  # what no one field shows (lanes and simd must divide)
            raise self.fail("config", d, f"a valid core config ({exc})") from None

    def tensor(self, obj: object, where: str, config: CoreConfig) -> None:
        t = self.record(obj, where, ("base", "chw", "ct", "shape", "window", "external"))
        chw, shape = self.typed(t, "chw", where, list), self.typed(t, "shape", where, list)
        if len(chw) != 3 or any(type(v) is not int or v < 1 for v in chw):
            raise self.fail(f"{where}.chw", chw, "3 positive integers (C, H, W)")
        if not shape or any(type(v) is not int or v < 1 for v in shape):
            raise self.fail(f"{where}.shape", shape, "a list of positive integers")
        values = chw
        if t["window"] is not None:
            if where != "input":
                raise self.fail(f"{where}.window", t["window"], "null (only the input is "
                                                                "stored in im2col order)")
            win = self.window(t["window"], f"{where}.window")
            if list(win.stored_chw()) != chw:
                raise self.fail(f"{where}.chw", chw, f"{list(win.stored_chw())} (the stored "
                                                     "im2col shape of the window)")
            values = list(win.chw)
        if math.prod(shape) != math.prod(values):
            raise self.fail(f"{where}.shape", shape, f"a shape of {math.prod(values)} values "
                                                     f"(chw {values})")
        ct = -(-chw[0] // config.simd)
        self.integer(t, "ct", where, ct, ct, f"{ct} (ceil(C / simd))")
        words = chw[1] * chw[2] * ct
        if t["external"] is not None:
            if not config.external:
                raise self.fail(f"{where}.external", t["external"], "null (a core without "
                                                                    "ext_bits has no m_axi)")
            self.integer(t, "external", where, 0, (1 << EXT_SRC_BITS) - words,
                         "the first external activation word of the tensor")
            self.integer(t, "base", where, 0, 0, "0 (the tensor lives in external memory)")
            return
        self.integer(t, "base", where, 0, config.act_depth - words,
                     f"an integer in 0..{config.act_depth - words} (its {words} words within "
                     f"the {config.act_depth}-word activation memory, config.act_depth)")

    def window(self, obj: object, where: str) -> Window:
        w = self.record(obj, where, ("chw", "kernel", "stride", "padding", "dilation"))
        for key, n, lo in (("chw", 3, 1), ("kernel", 2, 1), ("stride", 2, 1),
                           ("padding", 4, 0), ("dilation", 2, 1)):
            v = w[key]
            if (type(v) is not list or len(v) != n
                    or any(type(e) is not int or e < lo for e in v)):
                raise self.fail(f"{where}.{key}", v, f"{n} integers >= {lo}")
        win = Window.from_dict(w)
        if min(win.out_hw()) < 1:
            raise self.fail(where, obj, "a window that fits the padded input")
        return win

    def sections(self, obj: object, config: CoreConfig, payload_bytes: int) -> None:
        names = [s.get("name") if isinstance(s, dict) else None for s in obj] \
            if isinstance(obj, list) else []
        if not all(isinstance(n, str) for n in names) or sorted(names) != sorted(SECTIONS):
            raise self.fail("sections", obj, f"one entry for each of {', '.join(SECTIONS)}")
        for i, sec in enumerate(obj):  # first the sizes: the word widths depend on the depths
            where = f"sections[{i}]"
            self.record(sec, where, SECTION_FIELDS)
            name = sec["name"]
            if name == "ext":
                most = (1 << EXT_SRC_BITS) if config.external else 0
                self.integer(sec, "words", where, 0, most,
                             f"at most {most} (external words a descriptor addresses)"
                             if most else "0 (the core has no external memory port)")
                continue
            depth = getattr(config, f"{name}_depth")
            self.integer(sec, "words", where, 0, depth,
                         f"at most {depth} (the {name} memory's depth, config.{name}_depth)")
        words = core_words(config)
        for i, sec in enumerate(obj):
            where = f"sections[{i}]"
            chunks = (words.ext_chunks if sec["name"] == "ext"
                      else words.memories[sec["name"]].chunks)
            self.integer(sec, "chunks", where, chunks, chunks,
                         f"{chunks} (32-bit chunks of a {sec['name']} word of this config)")
            nbytes = 4 * sec["words"] * chunks
            self.integer(sec, "nbytes", where, nbytes, nbytes, f"{nbytes} (4 * words * chunks)")
            self.integer(sec, "offset", where, 0, payload_bytes - nbytes,
                         f"an integer in 0..{payload_bytes - nbytes} (within the "
                         f"{payload_bytes} bytes of sections)")
            self.integer(sec, "crc32", where, 0, 0xFFFFFFFF)

    def layer(self, obj: object, where: str) -> None:
        layer = self.record(obj, where, LAYER_FIELDS, LAYER_FACTS)
        for key in ("name", "kind", "op"):
            self.typed(layer, key, where, str)
        self.integer(layer, "cycles", where)
        for key in LAYER_FACTS:
            if key in layer and key in LAYER_LISTS:
                self.typed(layer, key, where, list)
            elif key == "fused" and key in layer:
                self.typed(layer, key, where, str)
            elif key in layer:
                self.integer(layer, key, where)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _pack_tensor(program: Program, t: Tensor, x: object, what: str) -> np.ndarray:
    xa = np.asarray(x)
    if xa.dtype.kind not in "iu":
        raise TypeError(f"{what} must be an integer array, not dtype {xa.dtype}")
    xa = xa.astype(np.int64)
    if xa.ndim == 0 or xa.shape[0] == 0:
        raise ValueError(f"{what} must hold at least one sample (N >= 1), not shape {xa.shape}")
    if xa.shape[1:] != t.shape:
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, t.shape))}), "
                         f"not {xa.shape}")
    n = xa.shape[0]
    c, h, w = t.chw
    s = program.config.simd
    a = np.zeros((n, h, w, t.ct * s), dtype=np.int64)
    if t.window is not None:
        a[..., :c] = t.window.apply(xa.reshape(n, *t.window.chw))
    else:
        a[..., :c] = xa.reshape(n, c, h, w).transpose(0, 2, 3, 1)
    lay = program.words.act
    return lay.pack(n * t.words, a=a.reshape(-1, s)).reshape(n, t.words, lay.chunks)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
