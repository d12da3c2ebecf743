"""Bit-field layouts of the core's memory words, defined once for compiler, RTL and host.

Every memory of the core holds words made of named fields packed LSB first, in the order
given (the same rule as :class:`amaranth.lib.data.StructLayout`, which the RTL builds from
these objects). Images are NumPy arrays of shape ``(words, chunks)`` of ``uint32``: chunk
``i`` holds bits ``32*i .. 32*i+31`` of the word, the form the bulk-load path takes.

This module is pure Python and NumPy: the host runtime imports it (no Amaranth).

Memories and their words (``P`` lanes, ``S`` SIMD, ``A`` activation address bits):

``act``     ``S`` signed activations, channel ``ct*S + s`` in element ``s``.
``weight``  one *micro-op* of the MAC array: a header (``off``, ``u``, ``v``, ``glast``;
            ``shift``/``neg`` on bit_serial) and the payload ``w`` of ``P*S`` codes, lane
            major (``w[l*S + s]``). POT codes (shift_add), INT codes or CODEBOOK indices
            of ``weight_bits`` (multiply), or one bit-plane (bit_serial).
            A core with ``pack`` adds ``off2``, ``u2``, ``v2`` (a second activation word and
            its tap) and ``split`` (0..S-1) after ``glast``: the micro-op's activation
            vector is ``a[j] = A[j]`` for ``split == 0`` or ``j < split``, else
            ``B[j - split]``, A the word at ``off`` and B the word at ``off2``, each zero
            in the padding; its weights at lanes no activation fills are 0
            (:mod:`hwq.layout.kpack`).
            A core with ``depthwise`` adds ``hi`` after ``split``: in a depthwise descriptor
            (``dw``) SIMD 0 then multiplies window slot 8 instead of slot 0
            (:mod:`hwq.layout.dwmode`).
``param``   per group of ``P`` output channels: ``bias`` (int32), ``m`` (24-bit), ``s``
            (6-bit) for each lane.
``desc``    one layer descriptor (see :func:`desc_layout`).

External memory (cores with ``ext_bits``, the ``m_axi`` port): the weight memory is then a
buffer that the core fills from the external image (``Program.images["ext"]``) while it
runs. Each external word is one weight micro-op in ``ext_beats`` beats of ``ext_bits``,
LSB beat first at the lower address (the word's ``chunks`` zero-extended to whole beats).
The descriptors of such a core carry a load (``ld_len`` words from external word
``ld_src`` to weight address ``ld_dst``, started when the descriptor starts), ``wait``
(start only when no load is in flight), ``nop`` (a descriptor that only loads) and
``out_lim`` (the output channel tiles the descriptor writes, for a layer cut into tiles of
output-channel groups).

Activations move over the same port: a load with ``ld_act`` reads ``ld_len`` activation
words from external activation word ``ld_src`` (``ext_act_beats`` beats each, the same
LSB-beat-first rule) into activation address ``ld_dst``; a store (``st_len`` words from
activation address ``st_src`` to external activation word ``st_dst``) runs in a ``nop``
descriptor, which ends when the memory has acknowledged every write. External weight words
and external activation words are indexed separately: word ``i`` starts at byte
``i * beats * ext_bits / 8`` of the image with that word's ``beats``.

Fused pooling (cores with ``pool_words``): a matmul descriptor with ``fuse`` walks the conv
positions of each max-pool window (``kernel_h x kernel_w`` taps, the conv position of tap
``(u, v)`` at input offset ``u * dy_step + v * dx_step`` and input row/column offset
``u * tap_sh``/``v * tap_sw``) and writes each pooled output once, the maximum of its
window's requantized outputs. Its ``out_h``, ``out_w``, ``stride_*``, ``*_step`` and
``out_*`` fields then describe the pooled positions (:func:`hwq.layout.compiler.compile`).
A pool descriptor ignores ``fuse``, ``tap_sh`` and ``tap_sw`` (its taps step by 1).

Depthwise mode (cores with ``depthwise``, :mod:`hwq.layout.dwmode`): a matmul descriptor
with ``dw`` runs the micro-ops ``w_base .. w_last`` at the first position of each output
row and ``w_base2 .. w_last2`` at the others; its micro-ops write the words they read into
the window register file and the array multiplies the window (lane ``l``, SIMD ``j``:
element ``l`` of slot ``j``), not the read word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hwq.golden._checks import signed_range

if TYPE_CHECKING:
    from hwq.config import CoreConfig

CHUNK_BITS = 32

#: Descriptor ``kind`` values.
KIND_MATMUL = 0
KIND_POOL = 1
#: Bits of a descriptor's ``ld_src`` (external word index): 2**28 words of at least 4 bytes.
EXT_SRC_BITS = 28
#: Descriptor ``fmt`` values (multiply PE only: how the payload decodes).
FMT_INT = 0
FMT_CODEBOOK = 1


@dataclass(frozen=True)
class Field:
    """One named field: ``count`` elements of ``width`` bits (two's complement if signed)."""

    name: str
    width: int
    signed: bool = False
    count: int = 1
    array: bool = False

    def __post_init__(self) -> None:
        if self.count > 1:
            object.__setattr__(self, "array", True)
        if not 1 <= self.width <= 62:
            raise ValueError(f"Field width must be 1..62 bits, not {self.width!r}")
        if self.count < 1:
            raise ValueError(f"Field count must be a positive integer, not {self.count!r}")

    @property
    def bits(self) -> int:
        return self.width * self.count

    def range(self) -> tuple[int, int]:
        if self.signed:
            return signed_range(self.width)
        return 0, (1 << self.width) - 1


class WordLayout:
    """An ordered set of :class:`Field` packed LSB first into one memory word.

    >>> lay = WordLayout("demo", [Field("a", 4), Field("b", 3, signed=True, count=2)])
    >>> lay.width, lay.chunks, lay.offset("b")
    (10, 1, 4)
    >>> img = lay.pack(1, a=5, b=[[-1, 2]])
    >>> hex(int(img[0, 0]))
    '0x175'
    >>> {k: v.tolist() for k, v in lay.unpack(img).items()}
    {'a': [5], 'b': [[-1, 2]]}
    """

    def __init__(self, name: str, fields: list[Field]) -> None:
        self.name = name
        self.fields = tuple(fields)
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"Field names of {name} must be unique, not {names}")
        self._offsets: dict[str, int] = {}
        offset = 0
        for f in self.fields:
            self._offsets[f.name] = offset
            offset += f.bits
        self.width = offset

    def __repr__(self) -> str:
        return f"WordLayout({self.name!r}, width={self.width})"

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} word has no field {name!r}")

    @property
    def chunks(self) -> int:
        """32-bit chunks per word."""
        return max(1, -(-self.width // CHUNK_BITS))

    def offset(self, name: str) -> int:
        return self._offsets[name]

    def check(self, name: str, values: object, what: str) -> None:
        """Raise ``ValueError`` if ``values`` do not fit field ``name``; ``what`` names them."""
        f = self[name]
        v = np.asarray(values, dtype=np.int64)
        lo, hi = f.range()
        if v.size and (int(v.min()) < lo or int(v.max()) > hi):
            bad = int(v.max()) if int(v.max()) > hi else int(v.min())
            raise ValueError(f"{what} must fit the {f.width}-bit {self.name}.{name} field "
                             f"({lo}..{hi}), not {bad}")

    def pack(self, n: int, **values: object) -> np.ndarray:
        """Pack ``n`` words; missing fields are zero. Returns ``(n, chunks)`` uint32."""
        unknown = set(values) - set(self._offsets)
        if unknown:
            raise ValueError(f"{self.name} word has no field(s) {sorted(unknown)}")
        parts = []
        for f in self.fields:
            if f.name in values:
                v = np.broadcast_to(np.asarray(values[f.name], dtype=np.int64),
                                    (n, f.count) if f.array else (n,))
                self.check(f.name, v, f"{self.name}.{f.name}")
                v = v.reshape(n, f.count)
            else:
                v = np.zeros((n, f.count), dtype=np.int64)
            v = v & ((1 << f.width) - 1)
            bits = (v[:, :, None] >> np.arange(f.width, dtype=np.int64)) & 1
            parts.append(bits.reshape(n, f.bits).astype(np.uint8))
        total = self.chunks * CHUNK_BITS
        parts.append(np.zeros((n, total - self.width), dtype=np.uint8))
        bits = np.concatenate(parts, axis=1).reshape(n, self.chunks, CHUNK_BITS)
        weights = np.left_shift(np.uint64(1), np.arange(CHUNK_BITS, dtype=np.uint64))
        return (bits.astype(np.uint64) * weights).sum(axis=2).astype(np.uint32)

    def unpack(self, words: np.ndarray) -> dict[str, np.ndarray]:
        """Inverse of :meth:`pack`: field name -> int64 array ``(n,)`` or ``(n, count)``."""
        w = np.asarray(words, dtype=np.uint32)
        if w.ndim != 2 or w.shape[1] != self.chunks:
            raise ValueError(f"{self.name} words must have shape (n, {self.chunks}), "
                             f"not {w.shape}")
        n = w.shape[0]
        bits = ((w[:, :, None].astype(np.uint64) >> np.arange(CHUNK_BITS, dtype=np.uint64))
                & np.uint64(1)).reshape(n, -1).astype(np.int64)
        out = {}
        for f in self.fields:
            o = self._offsets[f.name]
            fb = bits[:, o:o + f.bits].reshape(n, f.count, f.width)
            v = (fb << np.arange(f.width, dtype=np.int64)).sum(axis=2)
            if f.signed:
                v = np.where(v >= 1 << (f.width - 1), v - (1 << f.width), v)
            out[f.name] = v if f.array else v[:, 0]
        return out

    def to_ints(self, words: np.ndarray) -> list[int]:
        """Each word as one Python integer (for ``$readmemh`` and memory initialization)."""
        w = np.asarray(words, dtype=np.uint32)
        return [sum(int(c) << (CHUNK_BITS * i) for i, c in enumerate(row)) for row in w]

    def from_ints(self, values: list[int]) -> np.ndarray:
        """Inverse of :meth:`to_ints`."""
        out = np.zeros((len(values), self.chunks), dtype=np.uint32)
        for j, v in enumerate(values):
            for i in range(self.chunks):
                out[j, i] = (v >> (CHUNK_BITS * i)) & 0xFFFF_FFFF
        return out


def addr_bits(depth: int) -> int:
    """Bits of an address into ``depth`` words (at least 1)."""
    return max(1, (depth - 1).bit_length())


@dataclass(frozen=True)
class CoreWords:
    """All word layouts and derived widths of one :class:`~hwq.config.CoreConfig`."""

    act: WordLayout
    weight: WordLayout
    param: WordLayout
    desc: WordLayout
    act_addr_bits: int
    weight_addr_bits: int
    param_addr_bits: int
    desc_addr_bits: int
    dim_bits: int
    pos_bits: int
    ext_bits: int = 0

    @property
    def ext_beats(self) -> int:
        """Beats of the ``m_axi`` bus per external weight word (0 without the port)."""
        return -(-self.weight.width // self.ext_bits) if self.ext_bits else 0

    @property
    def ext_act_beats(self) -> int:
        """Beats of the ``m_axi`` bus per external activation word (0 without the port)."""
        return -(-self.act.width // self.ext_bits) if self.ext_bits else 0

    @property
    def ext_chunks(self) -> int:
        """32-bit chunks of one external word (whole beats; 1 without the port)."""
        return max(1, self.ext_beats * self.ext_bits // CHUNK_BITS)

    @property
    def memories(self) -> dict[str, WordLayout]:
        return {"desc": self.desc, "weight": self.weight, "param": self.param, "act": self.act}


#: Bulk-path memory numbers (the ``BULK_SEL`` register).
MEMORY_IDS: dict[str, int] = {"desc": 0, "weight": 1, "param": 2, "act": 3}


def core_words(config: CoreConfig) -> CoreWords:
    """The word layouts of ``config``'s memories."""
    p, s = config.lanes, config.simd
    a_bits = addr_bits(config.act_depth)
    w_bits = addr_bits(config.weight_depth)
    p_bits = addr_bits(config.param_depth)
    d_bits = addr_bits(config.desc_depth)
    dim = a_bits + 1          # heights, widths, kernel taps, channel tiles: <= act_depth
    pos = a_bits + 2          # signed position addresses (negative in the padding)
    act = WordLayout("act", [Field("a", config.act_bits, signed=True, count=s, array=True)])
    header = [Field("off", a_bits), Field("u", dim), Field("v", dim), Field("glast", 1)]
    if config.pack:
        header += [Field("off2", a_bits), Field("u2", dim), Field("v2", dim),
                   Field("split", (s - 1).bit_length())]
    if config.depthwise:
        header.append(Field("hi", 1))
    if config.pe == "bit_serial":
        weight = WordLayout("weight", header + [Field("shift", 3), Field("neg", 1),
                                                Field("w", 1, count=p * s, array=True)])
    else:
        weight = WordLayout("weight", header + [Field("w", config.weight_bits, count=p * s,
                                                      array=True)])
    param = WordLayout("param", [Field("bias", 32, signed=True, count=p, array=True),
                                 Field("m", 24, count=p, array=True),
                                 Field("s", 6, count=p, array=True)])
    desc_fields = [
        Field("kind", 1), Field("last", 1), Field("fmt", 1),
        Field("in_h", dim), Field("in_w", dim), Field("out_h", dim), Field("out_w", dim),
        Field("in_ct", dim), Field("out_ct", dim), Field("stride_h", dim),
        Field("stride_w", dim), Field("pad_t", dim), Field("pad_l", dim),
        Field("pos0", pos, signed=True), Field("col_step", pos), Field("row_step", pos),
        Field("dx_step", a_bits + 1), Field("dy_step", a_bits + 1), Field("out_base", a_bits),
        Field("kernel_h", dim), Field("kernel_w", dim),
        Field("w_base", w_bits), Field("w_last", w_bits), Field("p_base", p_bits),
        Field("lo", config.act_bits, signed=True), Field("hi", config.act_bits, signed=True),
    ]
    if config.pe == "multiply":
        desc_fields.append(Field("table", config.table_bits, signed=True,
                                 count=1 << config.weight_bits))
    if config.external:
        desc_fields += [Field("wait", 1), Field("nop", 1), Field("out_lim", dim),
                        Field("ld_act", 1),
                        Field("ld_len", addr_bits(max(config.weight_depth,
                                                      config.act_depth) + 1)),
                        Field("ld_dst", max(w_bits, a_bits)), Field("ld_src", EXT_SRC_BITS),
                        Field("st_len", addr_bits(config.act_depth + 1)),
                        Field("st_src", a_bits), Field("st_dst", EXT_SRC_BITS)]
    if config.pool_words:
        desc_fields += [Field("fuse", 1), Field("tap_sh", dim), Field("tap_sw", dim)]
    if config.depthwise:
        desc_fields += [Field("dw", 1), Field("w_base2", w_bits), Field("w_last2", w_bits)]
    desc = WordLayout("desc", desc_fields)
    return CoreWords(act=act, weight=weight, param=param, desc=desc, act_addr_bits=a_bits,
                     weight_addr_bits=w_bits, param_addr_bits=p_bits, desc_addr_bits=d_bits,
                     dim_bits=dim, pos_bits=pos, ext_bits=config.ext_bits)
