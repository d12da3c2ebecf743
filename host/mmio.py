"""``MmioDevice``: a core on a board, its AXI4-Lite registers mapped into memory.

On Linux the register window is reached through a UIO device (``/dev/uio0``; map ``N`` at
offset ``N * PAGESIZE``) or ``/dev/mem`` at the core's physical base address (root only).
Every register access is one aligned 32-bit load or store on the mapping, through a
``memoryview`` of unsigned 32-bit items (a fixed 4-byte copy in C), not
``struct.unpack_from("<I")``/``pack_into``, whose little-endian code moves the word byte by
byte: split into byte accesses, one read of ``BULK_RDATA`` would pop four chunks and one
``BULK_WDATA`` write would write four partial chunks. Registers are little-endian, as is
every host this runs on (checked at import). The mapping cannot see a bus response: the
core answers an unmapped offset with SLVERR, which an ARM host takes as an external abort
(SIGBUS), so an unmapped offset is refused with ValueError before any access
(:func:`hwq.host.device.check_offset`). Tested against a file-backed fake.
"""

from __future__ import annotations

import mmap
import os
import sys
from pathlib import Path

from hwq.host.device import WINDOW, Device, DeviceError, check_offset, check_value

__all__ = ["WINDOW", "MmioDevice"]

if sys.byteorder != "little":  # pragma: no cover - no big-endian host in sight
    raise ImportError("hwq.host.mmio needs a little-endian host (the core's registers are "
                      "little-endian and are accessed as native 32-bit words)")


class MmioDevice(Device):
    """A memory-mapped core.

    Parameters
    ----------
    path : str or os.PathLike
        ``/dev/uioN``, ``/dev/mem`` or (tests) a regular file of at least ``base + WINDOW``
        bytes.
    base : int
        byte offset of the register block in ``path``, a multiple of ``mmap.PAGESIZE``.
    ext_buffer : str or os.PathLike, optional
        for a core with ``m_axi``: a memory the core can read, where :meth:`write_external`
        puts a Program's external image (a DMA buffer such as ``/dev/udmabuf0``, or
        ``/dev/mem``; tests: a regular file).
    ext_offset : int
        byte offset of the image in ``ext_buffer`` (page aligned).
    ext_address : int, optional
        the bus address at which the core sees byte ``ext_offset`` of ``ext_buffer``
        (``EXT_BASE``); required with ``ext_buffer``.

    Raises
    ------
    FileNotFoundError
        nothing at ``path`` (the message names it).
    PermissionError
        ``path`` cannot be opened for reading and writing.
    ValueError
        ``base`` is negative or not page aligned.
    DeviceError
        the window cannot be mapped (e.g. the file is shorter than ``base + WINDOW``).
    """

    name = "mmio"

    def __init__(self, path: str | os.PathLike = "/dev/uio0", *, base: int = 0,
                 ext_buffer: str | os.PathLike | None = None, ext_offset: int = 0,
                 ext_address: int | None = None) -> None:
        if not isinstance(base, int) or base < 0 or base % mmap.ALLOCATIONGRANULARITY:
            raise ValueError(f"MMIO base must be a page-aligned byte offset (a multiple of "
                             f"{mmap.ALLOCATIONGRANULARITY}), not {base!r}")
        if ext_buffer is not None:
            if not isinstance(ext_address, int) or not 0 <= ext_address < 1 << 32:
                raise ValueError(f"An external buffer needs its 32-bit bus address "
                                 f"(ext_address), not {ext_address!r}")
            if not isinstance(ext_offset, int) or ext_offset < 0 \
                    or ext_offset % mmap.ALLOCATIONGRANULARITY:
                raise ValueError(f"External buffer offset must be page aligned (a multiple of "
                                 f"{mmap.ALLOCATIONGRANULARITY}), not {ext_offset!r}")
        self.ext_buffer = None if ext_buffer is None else Path(ext_buffer)
        self.ext_offset, self.ext_address = ext_offset, ext_address
        self.path = Path(path)
        self.base = base
        fd = _open(self.path, "MMIO device")
        try:
            mapping = mmap.mmap(fd, WINDOW, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                                offset=base)
        except (OSError, ValueError) as exc:
            os.close(fd)
            raise DeviceError(f"Cannot map {WINDOW} bytes of {self.path} at offset {base:#x}: "
                              f"{exc}") from None
        self._fd = fd
        self._map = mapping
        self._words = memoryview(mapping).cast("I")
        if self._words.itemsize != 4:  # pragma: no cover - C unsigned int is 32 bits here
            raise DeviceError("MmioDevice needs a platform whose C unsigned int is 32 bits")

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has released the mapping."""
        return self._map.closed

    def _index(self, offset: int) -> int:
        if self._map.closed:
            raise DeviceError(f"MmioDevice on {self.path} is closed")
        return check_offset(offset) >> 2

    async def read_reg(self, offset: int) -> int:
        """One 32-bit load from the register at byte ``offset`` (ValueError if unmapped)."""
        return int(self._words[self._index(offset)])

    async def write_reg(self, offset: int, value: int) -> None:
        """One 32-bit store of ``value`` to the register at byte ``offset`` (ValueError if
        unmapped)."""
        index = self._index(offset)
        self._words[index] = check_value(value)

    async def write_external(self, image) -> int:
        """Copy the external image into ``ext_buffer`` at ``ext_offset``; return
        ``ext_address``, where the core reads it."""
        if self.ext_buffer is None:
            return await super().write_external(image)
        import numpy as np

        data = np.ascontiguousarray(image, dtype="<u4").tobytes()
        fd = _open(self.ext_buffer, "external buffer")
        try:
            with mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                           offset=self.ext_offset) as buf:
                buf[:] = data
                buf.flush()
        except (OSError, ValueError) as exc:
            raise DeviceError(f"Cannot map {len(data)} bytes of {self.ext_buffer} at offset "
                              f"{self.ext_offset:#x} for the external image: {exc}") from None
        finally:
            os.close(fd)
        return self.ext_address

    def _ext_span(self, offset: int, nbytes: int):
        """A map of the external buffer over bytes ``offset .. offset + nbytes`` of the
        image, and where they start in it (mmap offsets are whole pages)."""
        start = self.ext_offset + offset
        page = start - start % mmap.ALLOCATIONGRANULARITY
        fd = _open(self.ext_buffer, "external buffer")
        try:
            buf = mmap.mmap(fd, start - page + nbytes, mmap.MAP_SHARED,
                            mmap.PROT_READ | mmap.PROT_WRITE, offset=page)
        except (OSError, ValueError) as exc:
            raise DeviceError(f"Cannot map {nbytes} bytes of {self.ext_buffer} at offset "
                              f"{start:#x}: {exc}") from None
        finally:
            os.close(fd)
        return buf, start - page

    async def write_external_at(self, offset: int, chunks) -> None:
        if self.ext_buffer is None:
            return await super().write_external_at(offset, chunks)
        import numpy as np

        data = np.ascontiguousarray(chunks, dtype="<u4").tobytes()
        buf, at = self._ext_span(offset, len(data))
        with buf:
            buf[at:at + len(data)] = data
            buf.flush()

    async def read_external(self, offset: int, count: int):
        if self.ext_buffer is None:
            return await super().read_external(offset, count)
        import numpy as np

        buf, at = self._ext_span(offset, 4 * count)
        with buf:
            return np.frombuffer(bytes(buf[at:at + 4 * count]), dtype="<u4").astype(np.uint32)

    async def close(self) -> None:
        """Unmap the window and close the file (idempotent)."""
        if not self._map.closed:
            self._words.release()
            self._map.close()
            os.close(self._fd)


def _open(path: Path, what: str) -> int:
    """``path`` opened for reading and writing (synchronous), or one clear error naming it."""
    try:
        return os.open(path, os.O_RDWR | os.O_SYNC)
    except FileNotFoundError:
        raise FileNotFoundError(f"No {what} at {path}") from None
    except PermissionError:
        raise PermissionError(f"No permission to map {path}: run as root or give the user "
                              f"read/write access to the {what}") from None
