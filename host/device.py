"""The Device interface: register-level access to one hwq core.

A device exposes the core's AXI4-Lite register block (:mod:`hwq.layout.regmap`) as
``read_reg`` / ``write_reg``; everything else (the bulk path into the memories, waiting
for DONE, the cycle counters) is built on those two here, and a backend may override a
piece with a faster path (a simulator can wait on the interrupt line instead of polling).

Backends: :class:`hwq.host.golden.GoldenDevice` (a NumPy model of the core),
:class:`hwq.host.mmio.MmioDevice` (a board, through mmap), ``hwq.sim.device.SimDevice``
(the Verilated RTL inside cocotb) and ``hwq.sim.compiled.CompiledDevice`` (the Verilated
RTL with a C++ host, through ctypes).
"""

from __future__ import annotations

import asyncio
import operator
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from hwq.errors import HwqError
from hwq.layout import regmap
from hwq.layout.regmap import ADDR, ADDR_WIDTH, BIT, MEM, PE_CODES
from hwq.layout.words import MEMORY_IDS

__all__ = ["MAPPED", "CoreIdentity", "Device", "DeviceError", "DeviceTimeout", "check_offset",
           "check_value"]

#: Bytes of register space the core decodes.
WINDOW = 1 << ADDR_WIDTH
_MASK32 = 0xFFFF_FFFF


class DeviceError(HwqError):
    """The device misbehaved: wrong identity or config, a timeout, a bus error."""


class DeviceTimeout(DeviceError):
    """The core did not finish in time."""


def _map_text() -> str:
    """The register map's offsets in a few words: ``0x00..0x44 except 0x2c``."""
    offsets = sorted(r.offset for r in regmap.REGISTERS)
    holes = [o for o in range(offsets[0], offsets[-1], 4) if o not in MAPPED]
    text = f"{offsets[0]:#04x}..{offsets[-1]:#04x}"
    return text + (" except " + ", ".join(f"{o:#04x}" for o in holes) if holes else "")


#: Byte offsets of the registers of :data:`hwq.layout.regmap.REGISTERS`; the core answers
#: every other word of its window with SLVERR.
MAPPED = frozenset(r.offset for r in regmap.REGISTERS)


def check_offset(offset: int) -> int:
    """``offset`` as an int if it is the byte offset of a register of the map.

    Every device checks an offset here before the access: the core answers an unmapped
    word with SLVERR, which a board's memory mapping (:class:`~hwq.host.mmio.MmioDevice`)
    cannot report (an ARM host takes it as an external abort), so no device issues one.

    Raises
    ------
    TypeError
        ``offset`` is not an integer.
    ValueError
        ``offset`` is not a multiple of 4 in ``0 .. WINDOW - 4``, or is no register's
        offset (unmapped).
    """
    try:
        off = operator.index(offset)
    except TypeError:
        raise TypeError(f"Register offset must be an integer, not {offset!r}") from None
    if off % 4 or not 0 <= off < WINDOW:
        raise ValueError(f"Register offset must be a multiple of 4 in 0..{WINDOW - 4:#x}, "
                         f"not {off:#x}")
    if off not in MAPPED:
        raise ValueError(f"Register offset must be a mapped register ({_map_text()}), "
                         f"not {off:#04x} (unmapped)")
    return off


def check_value(value: int) -> int:
    """``value`` as an int if it is a 32-bit unsigned register value.

    Raises
    ------
    TypeError
        ``value`` is not an integer.
    ValueError
        ``value`` is outside ``0 .. 0xFFFFFFFF``.
    """
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"Register value must be an integer, not {value!r}") from None
    if not 0 <= v <= _MASK32:
        raise ValueError(f"Register value must be a 32-bit unsigned integer "
                         f"(0..{_MASK32:#x}), not {v}")
    return v


@dataclass(frozen=True)
class CoreIdentity:
    """What a core says about itself (registers ID, VERSION, FINGERPRINT, CONFIG0/1).

    Attributes
    ----------
    core_id : int
        the ``ID`` register (:data:`hwq.layout.regmap.CORE_ID` on an hwq core).
    version : int
        the ``VERSION`` register, ``major << 16 | minor``.
    fingerprint : str
        16 hex digits, :meth:`hwq.config.CoreConfig.fingerprint` of the core's config.
    config0, config1 : int
        the ``CONFIG0`` / ``CONFIG1`` registers (0 if not read).
    """

    core_id: int
    version: int
    fingerprint: str
    config0: int = 0
    config1: int = 0

    def check(self) -> None:
        """Raise :class:`DeviceError` unless this is an hwq core of a supported map version."""
        if self.core_id != regmap.CORE_ID:
            raise DeviceError(
                f"No hwq core at this device: ID register reads {self.core_id:#010x}, "
                f"expected {regmap.CORE_ID:#010x}"
            )
        if self.version >> 16 != regmap.MAP_VERSION[0]:
            raise DeviceError(
                f"Core register map version {self.version >> 16}.{self.version & 0xFFFF} is not "
                f"supported by this host (speaks {regmap.MAP_VERSION[0]}.x)"
            )

    def describe(self) -> str:
        """The core's parameters from CONFIG0/1, e.g. ``"pe=multiply, lanes=4, ..."``."""
        c0 = regmap.register("CONFIG0").unpack(self.config0)
        c1 = regmap.register("CONFIG1").unpack(self.config1)
        pe = {v: k for k, v in PE_CODES.items()}.get(c0["PE"], f"<code {c0['PE']}>")
        return (f"pe={pe}, lanes={c0['LANES']}, simd={c0['SIMD']}, act_bits={c1['ACT_BITS']}, "
                f"weight_bits={c1['WEIGHT_BITS']}, acc_bits={c1['ACC_BITS']}")


class Device(ABC):
    """Register-level access to one core; see the module docstring.

    Subclasses implement :meth:`read_reg` and :meth:`write_reg`; the rest has a default
    built on them. Usable as an async context manager (``close`` on exit).
    """

    #: short name for reports ("golden", "sim", "mmio")
    name: str = "device"
    #: the latency of the memory on the core's ``m_axi`` port when it is fixed (a memory
    #: model without stalls): the cycle model is then exact for external weights
    #: (:mod:`hwq.golden.memory`); None: unknown, the model is a lower bound
    memory_latency: int | None = None

    @abstractmethod
    async def read_reg(self, offset: int) -> int:
        """Read the 32-bit register at byte ``offset``."""

    @abstractmethod
    async def write_reg(self, offset: int, value: int) -> None:
        """Write the 32-bit register at byte ``offset``."""

    async def identify(self) -> CoreIdentity:
        """Read ID, VERSION, FINGERPRINT_LO/HI and CONFIG0/1."""
        core_id = await self.read_reg(ADDR.ID)
        version = await self.read_reg(ADDR.VERSION)
        lo = await self.read_reg(ADDR.FINGERPRINT_LO)
        hi = await self.read_reg(ADDR.FINGERPRINT_HI)
        return CoreIdentity(
            core_id=core_id, version=version, fingerprint=f"{hi << 32 | lo:016x}",
            config0=await self.read_reg(ADDR.CONFIG0),
            config1=await self.read_reg(ADDR.CONFIG1),
        )

    async def write_words(self, memory: str, base: int, words: np.ndarray) -> None:
        """Write ``words`` into ``memory`` from word ``base`` on, through ``BULK_WDATA``.

        Parameters
        ----------
        memory : {"desc", "weight", "param", "act"}
        base : int
            first word address.
        words : numpy.ndarray
            uint32 ``(n, chunks)``, chunk 0 the least significant (the memory's word
            layout, :mod:`hwq.layout.words`).
        """
        w = _check_words(words)
        await self.write_reg(ADDR.BULK_SEL, _memory_id(memory))
        await self.write_reg(ADDR.BULK_ADDR, check_value(base))
        for chunk in w.reshape(-1).tolist():
            await self.write_reg(ADDR.BULK_WDATA, chunk)

    async def read_words(self, memory: str, base: int, count: int, chunks: int) -> np.ndarray:
        """Read ``count`` words of ``chunks`` 32-bit chunks from word ``base`` on.

        Only the activation memory reads back (``BULK_RDATA``); ``memory`` must be ``"act"``.
        """
        check_read(memory, count, chunks)
        await self.write_reg(ADDR.BULK_SEL, MEM.act)
        await self.write_reg(ADDR.BULK_ADDR, check_value(base))
        out = [await self.read_reg(ADDR.BULK_RDATA) for _ in range(count * chunks)]
        return np.array(out, dtype=np.uint32).reshape(count, chunks)

    async def write_external(self, image: np.ndarray) -> int:
        """Put the external image (``Program.images["ext"]``, uint32 chunks, LSB first)
        where the core reads it over ``m_axi``; return its byte address (``EXT_BASE``).

        Devices with a memory model on the port implement it; the default refuses.
        """
        raise DeviceError(f"The {self.name} device has no external memory for the core's "
                          "m_axi port (its Program keeps weights off chip)")

    async def write_external_at(self, offset: int, chunks: np.ndarray) -> None:
        """Write uint32 ``chunks`` (LSB first) into the external image from byte ``offset``
        of it on (a network input in external memory); after :meth:`write_external`."""
        raise DeviceError(f"The {self.name} device has no external memory for the core's "
                          "m_axi port (its Program keeps tensors off chip)")

    async def read_external(self, offset: int, count: int) -> np.ndarray:
        """``count`` uint32 chunks of the external image from byte ``offset`` of it on (a
        network output in external memory)."""
        raise DeviceError(f"The {self.name} device has no external memory for the core's "
                          "m_axi port (its Program keeps tensors off chip)")

    async def start(self) -> None:
        """Start a run (``CTRL.START``); :class:`DeviceError` if the core is still busy."""
        if (await self.read_reg(ADDR.STATUS)) & BIT.STATUS_BUSY:
            raise DeviceError(f"The core is busy with an earlier run ({self.name} device); "
                              "it ignores START until that run finishes")
        await self.write_reg(ADDR.CTRL, BIT.CTRL_START)

    async def wait_done(self, *, timeout_s: float, timeout_cycles: int | None = None) -> None:
        """Wait for STATUS.DONE; :class:`DeviceTimeout` after ``timeout_s`` seconds.

        This default polls the register with a growing back-off (10 us to 10 ms) and
        ignores ``timeout_cycles``; a simulated device waits on the interrupt for at most
        ``timeout_cycles`` clock cycles instead.
        """
        if not timeout_s > 0:
            raise ValueError(f"Timeout must be a positive number of seconds, not {timeout_s!r}")
        deadline = time.monotonic() + timeout_s
        delay = 1e-5
        while not (await self.read_reg(ADDR.STATUS)) & BIT.STATUS_DONE:
            if time.monotonic() > deadline:
                raise DeviceTimeout(f"The core did not finish within {timeout_s} s "
                                    f"({self.name} device)")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)

    async def cycles(self, layers: int) -> tuple[int, list[int]]:
        """``(CYCLES, [LAYER_CYCLES of layer i for i < layers])`` of the last run."""
        total = await self.read_reg(ADDR.CYCLES)
        per_layer = []
        for i in range(layers):
            await self.write_reg(ADDR.LAYER_SEL, i)
            per_layer.append(await self.read_reg(ADDR.LAYER_CYCLES))
        return total, per_layer

    async def close(self) -> None:
        """Release the device (nothing to release by default)."""
        return

    async def __aenter__(self) -> Device:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


def check_read(memory: str, count: int, chunks: int) -> None:
    """Refuse a bulk read other than ``count >= 0`` words of ``chunks >= 1`` of ``act``."""
    if memory != "act":
        raise ValueError(f"Only the act memory can be read back through BULK_RDATA, "
                         f"not {memory!r}")
    if operator.index(count) < 0 or operator.index(chunks) < 1:
        raise ValueError(f"Words to read must be count >= 0 of chunks >= 1, not "
                         f"count={count!r}, chunks={chunks!r}")


def _memory_id(memory: str) -> int:
    if memory not in MEMORY_IDS:
        raise ValueError(f"Memory must be one of {', '.join(MEMORY_IDS)}, not {memory!r}")
    return MEMORY_IDS[memory]


def _check_words(words: object) -> np.ndarray:
    w = np.asarray(words)
    if w.ndim != 2 or w.dtype.kind not in "iu":
        raise ValueError(f"Words must be an integer array (n, chunks), not {w.dtype} of "
                         f"shape {w.shape}")
    if w.size and (int(w.min()) < 0 or int(w.max()) > _MASK32):
        raise ValueError("Word chunks must be 32-bit unsigned integers (0..0xffffffff)")
    return w.astype(np.uint32)
