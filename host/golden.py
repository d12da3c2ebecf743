"""``GoldenDevice``: the functional model of an hwq core, at the register level, in NumPy.

It answers ``read_reg`` / ``write_reg`` exactly as the RTL register block of
:class:`hwq.rtl.core.Core` does (the RTL is the reference; ``tests/host`` replays the same
register traffic on both and compares every read), keeps the four memories as word arrays,
and on ``CTRL.START`` runs the descriptors in its memories with the layout executor
(:func:`hwq.layout.executor.run_images`, the one implementation of the core's arithmetic)
and fills the cycle counters with the cycle model, which the RTL's counters equal exactly.
The per-layer cycles are computed from the descriptors and micro-ops in its memories
(:func:`hwq.layout.executor.layer_cycles`), not taken from the Program: the model knows
only what the host wrote, as the core does.

Register behaviour (see :mod:`hwq.layout.regmap`):

* ``ID``, ``VERSION``, ``FINGERPRINT_LO/HI``, ``CONFIG0/1``: constants of the config.
* ``CTRL``: ``CLEAR_DONE`` clears DONE; ``START`` (ignored while BUSY) clears DONE and runs
  every descriptor up to the one with ``last``. The model runs it at once: when the write
  returns, BUSY is 0 and DONE is 1. Reads return 0.
* ``STATUS``: BUSY, DONE (sticky until START or CLEAR_DONE). ``irq`` is ``DONE and
  IRQ_ENABLE``.
* ``CYCLES``, ``LAYERS_DONE``: of the last run; ``LAYER_CYCLES`` shows the cycles of layer
  ``LAYER_SEL`` of the last run that reached it (a per-layer memory, not cleared by START;
  0 past the descriptor memory). ``LAYER_SEL`` keeps ``ceil(log2(desc_depth))`` bits.
* Bulk path: ``BULK_SEL`` (2 bits) picks the memory; writing ``BULK_ADDR`` also restarts
  the chunk counts; each ``BULK_WDATA`` write is the next 32-bit chunk of the word at
  ``BULK_ADDR``, LSB chunk first, and the last chunk of a word writes it (bits above the
  word width are dropped) and advances ``BULK_ADDR``. Each ``BULK_RDATA`` read returns the
  next chunk of the *activation* word at ``BULK_ADDR`` (whatever ``BULK_SEL`` is) and the
  last chunk advances ``BULK_ADDR``. The address is taken modulo the memory's address
  bits (``ceil(log2(depth))``); between the depth and that power of two (a depth that is
  not a power of two), where the RTL is undefined, writes are dropped and reads return 0.
  Host writes to the activation memory are dropped while BUSY.
* ``ro`` registers ignore writes. An unmapped offset (the RTL answers SLVERR) raises
  ValueError naming it and the map's range (:func:`hwq.host.device.check_offset`), as on
  every device.
* External memory (a core with ``ext_bits``): :meth:`GoldenDevice.write_external` holds the
  image at :data:`hwq.golden.memory.SIM_BASE`; ``EXT_BASE`` says where the core reads it;
  the counters (and ``STALL_CYCLES``, ``EXT_BEATS``) are those of a memory of fixed
  ``memory_latency`` (:func:`hwq.golden.memory.schedule`).

Where the model is not the RTL: a run takes no wall-clock time (BUSY is never seen, except
below); a descriptor memory without a ``last`` descriptor leaves the model BUSY for ever
(the core would never finish; the host's ``wait_done`` times out; :meth:`GoldenDevice.reset`
recovers), with ``CYCLES`` and ``LAYERS_DONE`` left at 0; descriptors that point outside
the memories raise :class:`~hwq.host.device.DeviceError` from the ``CTRL`` write instead of
doing something undefined. Byte strobes are not modelled (every write is a whole word).
"""

from __future__ import annotations

import numpy as np

from hwq.config import CoreConfig
from hwq.golden._checks import check_int
from hwq.golden.cycles import OVERHEADS
from hwq.golden.memory import SIM_BASE, schedule, stall_cycles
from hwq.host.device import Device, DeviceError, check_offset, check_value
from hwq.layout import regmap
from hwq.layout.executor import LayerRun, UnterminatedProgram, run_images
from hwq.layout.regmap import ADDR, BIT
from hwq.layout.words import CHUNK_BITS, MEMORY_IDS, addr_bits, core_words

__all__ = ["GoldenDevice"]

_MASK32 = 0xFFFF_FFFF
_NAMES = {v: k for k, v in MEMORY_IDS.items()}
_STATUS = regmap.register("STATUS")


class GoldenDevice(Device):
    """A NumPy model of one core for ``config``, driven through its registers.

    Parameters
    ----------
    config : CoreConfig
        the core modelled; ``FINGERPRINT`` and ``CONFIG0/1/2`` come from it.
    memory_latency : int
        the fixed latency of the memory on ``m_axi`` (a core with ``ext_bits``).

    Attributes
    ----------
    config : CoreConfig
    memories : dict of str to numpy.ndarray
        ``desc``, ``weight``, ``param``, ``act``: uint32 ``(depth, chunks)`` word arrays.
    last_run : list of LayerRun
        what each layer of the last finished run did (for inspection).
    """

    name = "golden"

    def __init__(self, config: CoreConfig, *, memory_latency: int = 4) -> None:
        if not isinstance(config, CoreConfig):
            raise TypeError(f"GoldenDevice needs a hwq CoreConfig, not {type(config).__name__}")
        self.config = config
        self.memory_latency = check_int(memory_latency, "Memory latency", 1, 1 << 20)
        self.words = core_words(config)
        depth = config.depths
        self.memories = {name: np.zeros((depth[name], lay.chunks), dtype=np.uint32)
                         for name, lay in self.words.memories.items()}
        self._addr_mask = {name: (1 << addr_bits(depth[name])) - 1 for name in depth}
        self._top_mask = {name: _top_chunk_mask(lay.width, lay.chunks)
                          for name, lay in self.words.memories.items()}
        self._max_chunks = max(lay.chunks for lay in self.words.memories.values())
        # the RTL's chunk counter is a Signal(range(max_chunks + 1)): it wraps at 2**bits
        self._chunk_wrap = 1 << max(1, self._max_chunks.bit_length())
        self._layer_sel_mask = (1 << self.words.desc_addr_bits) - 1
        self._layers_done_mask = (1 << (self.words.desc_addr_bits + 1)) - 1
        self._cycle_mem = np.zeros(config.desc_depth, dtype=np.int64)
        lo, hi = regmap.fingerprint_words(config.fingerprint())
        config0, config1, config2 = regmap.config_words(config)
        self._const = {
            ADDR.ID: regmap.CORE_ID,
            ADDR.VERSION: regmap.version_word(),
            ADDR.FINGERPRINT_LO: lo,
            ADDR.FINGERPRINT_HI: hi,
            ADDR.CONFIG0: config0,
            ADDR.CONFIG1: config1,
            ADDR.CONFIG2: config2,
        }
        self.last_run: list[LayerRun] = []
        self.external = bytearray()           # the memory on m_axi, from SIM_BASE
        self.reset()

    # ---------------------------------------------------------------- state
    def reset(self) -> None:
        """Power-on reset of the registers (memories keep their contents, as in the RTL)."""
        self._busy = False
        self._done = False
        self._hung = False
        self._irq_en = 0
        self._bulk_sel = 0
        self._bulk_addr = 0
        self._wchunk = 0
        self._rchunk = 0
        self._buf = [0] * self._max_chunks
        self._layer_sel = 0
        self._cycles = 0
        self._layers_done = 0
        self._ext_base = 0
        self._stall_cycles = 0
        self._ext_beats = 0

    async def write_external(self, image: np.ndarray) -> int:
        """Hold the external image at :data:`~hwq.golden.memory.SIM_BASE` (a core with
        ``ext_bits``)."""
        if not self.config.external:
            return await super().write_external(image)
        self.external = bytearray(np.ascontiguousarray(image, dtype="<u4").tobytes())
        return SIM_BASE

    async def write_external_at(self, offset: int, chunks: np.ndarray) -> None:
        data = np.ascontiguousarray(chunks, dtype="<u4").tobytes()
        _check_span(offset, len(data), len(self.external))
        self.external[offset:offset + len(data)] = data

    async def read_external(self, offset: int, count: int) -> np.ndarray:
        _check_span(offset, 4 * count, len(self.external))
        return np.frombuffer(bytes(self.external[offset:offset + 4 * count]),
                             dtype="<u4").astype(np.uint32)

    @property
    def irq(self) -> bool:
        """The ``irq`` line: ``STATUS.DONE and IRQ_ENABLE.DONE``."""
        return bool(self._done and self._irq_en)

    # ---------------------------------------------------------------- Device API
    async def read_reg(self, offset: int) -> int:
        """Read the 32-bit register at byte ``offset`` (see :meth:`read`)."""
        return self.read(offset)

    async def write_reg(self, offset: int, value: int) -> None:
        """Write the 32-bit register at byte ``offset`` (see :meth:`write`)."""
        self.write(offset, value)

    # ---------------------------------------------------------------- registers
    def read(self, offset: int) -> int:
        """Synchronous register read (``BULK_RDATA`` has its side effect).

        Raises
        ------
        ValueError
            ``offset`` is not a word-aligned byte offset in the register window, or is
            unmapped.
        """
        offset = check_offset(offset)
        if offset in self._const:
            return self._const[offset]
        if offset == ADDR.STATUS:
            return _STATUS.pack(BUSY=int(self._busy), DONE=int(self._done))
        if offset == ADDR.IRQ_ENABLE:
            return self._irq_en
        if offset == ADDR.CYCLES:
            return self._cycles
        if offset == ADDR.LAYER_SEL:
            return self._layer_sel
        if offset == ADDR.LAYER_CYCLES:
            if self._layer_sel < self._cycle_mem.size:
                return int(self._cycle_mem[self._layer_sel])
            return 0
        if offset == ADDR.LAYERS_DONE:
            return self._layers_done
        if offset == ADDR.BULK_SEL:
            return self._bulk_sel
        if offset == ADDR.BULK_ADDR:
            return self._bulk_addr
        if offset == ADDR.BULK_RDATA:
            return self._bulk_read()
        if offset == ADDR.EXT_BASE:
            return self._ext_base
        if offset == ADDR.STALL_CYCLES:
            return self._stall_cycles
        if offset == ADDR.EXT_BEATS:
            return self._ext_beats
        return 0  # CTRL, BULK_WDATA (write only)

    def write(self, offset: int, value: int) -> None:
        """Synchronous register write.

        Raises
        ------
        ValueError
            ``offset`` is not a word-aligned byte offset in the register window or is
            unmapped, or ``value`` is not a 32-bit unsigned integer.
        DeviceError
            ``CTRL.START`` on descriptors that point outside the memories.
        """
        offset = check_offset(offset)
        value = check_value(value)
        if offset == ADDR.CTRL:
            if value & BIT.CTRL_CLEAR_DONE:
                self._done = False
            if value & BIT.CTRL_START and not self._busy:
                self._run()
        elif offset == ADDR.IRQ_ENABLE:
            self._irq_en = value & BIT.IRQ_ENABLE_DONE
        elif offset == ADDR.LAYER_SEL:
            self._layer_sel = value & self._layer_sel_mask
        elif offset == ADDR.BULK_SEL:
            self._bulk_sel = value & 0b11
        elif offset == ADDR.BULK_ADDR:
            self._bulk_addr = value
            self._wchunk = 0
            self._rchunk = 0
        elif offset == ADDR.BULK_WDATA:
            self._bulk_write(value)
        elif offset == ADDR.EXT_BASE:
            self._ext_base = value
        # read-only registers ignore writes

    # ---------------------------------------------------------------- bulk path
    def _bulk_write(self, chunk: int) -> None:
        name = _NAMES[self._bulk_sel]
        n = self.memories[name].shape[1]
        if self._wchunk < self._max_chunks:
            self._buf[self._wchunk] = chunk
        if self._wchunk == n - 1:
            self._commit(name, self._buf[:n])
            self._wchunk = 0
            self._bulk_addr = (self._bulk_addr + 1) & _MASK32
        else:
            self._wchunk = (self._wchunk + 1) % self._chunk_wrap

    def _commit(self, name: str, chunks: list[int]) -> None:
        mem = self.memories[name]
        addr = self._bulk_addr & self._addr_mask[name]
        if addr >= mem.shape[0] or (name == "act" and self._busy):
            return
        mem[addr] = chunks
        mem[addr, -1] &= self._top_mask[name]

    def _bulk_read(self) -> int:
        mem = self.memories["act"]
        addr = self._bulk_addr & self._addr_mask["act"]
        value = int(mem[addr, self._rchunk]) if addr < mem.shape[0] else 0
        if self._rchunk == mem.shape[1] - 1:
            self._rchunk = 0
            self._bulk_addr = (self._bulk_addr + 1) & _MASK32
        else:
            self._rchunk += 1
        return value

    # ---------------------------------------------------------------- a run
    def _external_words(self) -> np.ndarray:
        """The external words the core reads from ``EXT_BASE`` on."""
        return _external_words_of(self.external, self._ext_base - SIM_BASE,
                                  self.words.ext_chunks)

    def _run(self) -> None:
        self._done = False
        act_lay = self.words.act
        act = act_lay.unpack(self.memories["act"])["a"][None]
        images = {name: self.memories[name] for name in ("desc", "weight", "param")}
        ext_act = None
        moves = False
        if self.config.external:
            images["ext"] = self._external_words()
            d = self.words.desc.unpack(self.memories["desc"])
            moves = bool(d["st_len"].any() or d["ld_act"].any())
        if self.config.external and moves:          # activation words over m_axi
            ext_act = act_lay.unpack(_external_words_of(
                self.external, self._ext_base - SIM_BASE,
                self.words.ext_act_beats * self.config.ext_bits // CHUNK_BITS)[:, :act_lay.chunks]
            )["a"][None].copy()
        try:
            runs = run_images(self.config, images, act, ext_act)
        except UnterminatedProgram:
            self._busy = self._hung = True
            self._cycles = self._layers_done = 0
            return
        except (ValueError, IndexError) as exc:
            raise DeviceError(f"GoldenDevice: the core's memories hold an invalid program "
                              f"({exc})") from exc
        self.memories["act"][:] = act_lay.pack(act.shape[1], a=act[0])
        counts = [r.cycles for r in runs]
        if self.config.external:
            cfg, w = self.config, self.words
            timing = dict(beats=w.ext_beats, burst=cfg.ext_burst, act_beats=w.ext_act_beats,
                          outstanding=cfg.ext_outstanding, latency=self.memory_latency)
            counts = schedule([r.transfer() for r in runs], **timing)
            self._stall_cycles = stall_cycles([r.transfer() for r in runs], **timing) & _MASK32
            self._ext_beats = sum(r.ld_words * (w.ext_act_beats if r.ld_act else w.ext_beats)
                                  + r.st_words * w.ext_act_beats for r in runs) & _MASK32
            if moves:
                self._store_external(ext_act, runs)
        for r, count in zip(runs, counts, strict=True):
            self._cycle_mem[r.index] = count & _MASK32
        self._cycles = (sum(counts) + OVERHEADS.run) & _MASK32
        self._layers_done = len(runs) & self._layers_done_mask
        self.last_run = runs
        self._busy = False
        self._done = True


    def _store_external(self, ext_act: np.ndarray, runs: list[LayerRun]) -> None:
        """Write the activation words the run stored into the external bytes (each word
        zero-padded to whole beats, as the core writes it)."""
        lay = self.words.act
        size = self.words.ext_act_beats * self.config.ext_bits // 8
        offset = self._ext_base - SIM_BASE
        for r in runs:
            if not r.st_words:
                continue
            packed = lay.pack(r.st_words, a=ext_act[0, r.st_dst:r.st_dst + r.st_words])
            for k in range(r.st_words):
                raw = np.ascontiguousarray(packed[k], dtype="<u4").tobytes()
                at = offset + (r.st_dst + k) * size
                self.external[at:at + size] = raw + bytes(size - len(raw))


def _check_span(offset: int, nbytes: int, size: int) -> None:
    if not 0 <= offset <= offset + nbytes <= size:
        raise DeviceError(f"Bytes {offset}..{offset + nbytes - 1} are outside the external "
                          f"image of {size} bytes")


def _external_words_of(memory: bytes, offset: int, chunks: int) -> np.ndarray:
    """External words (``chunks`` each) of ``memory`` from byte ``offset`` on."""
    data = memory[max(0, offset):] if 0 <= offset <= len(memory) else b""
    usable = len(data) // (4 * chunks) * 4 * chunks
    return np.frombuffer(bytes(data[:usable]), dtype="<u4").reshape(-1, chunks).astype(np.uint32)


def _top_chunk_mask(width: int, chunks: int) -> int:
    bits = width - (chunks - 1) * CHUNK_BITS
    return (1 << bits) - 1 if bits < CHUNK_BITS else _MASK32
