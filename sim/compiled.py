"""The compiled backend: the Verilated core plus a C++ host in one shared library.

:func:`build` compiles the core's Verilog with Verilator (``-O3 --x-assign fast
--x-initial fast --noassert``) together with ``hwq_harness.cpp`` (the clock loop, the
AXI4-Lite master and the bulk-stream driver) into ``libhwq_sim.so``, cached like the cocotb
build: the folder is named by a hash of the sources, the harness, the register header, the
flags and the toolchain. :class:`CompiledModel` is one model instance in this process
(ctypes); :class:`CompiledDevice` is that model as a :class:`hwq.host.Device`, so
:class:`hwq.host.Runtime` drives it unchanged. Python calls the library once per register
access or bulk transfer; between START and DONE the core runs in C++ alone.

The register offsets, bit masks and memory ids reach the C++ as ``hwq_regs.h``, written
from :mod:`hwq.layout.regmap` (:func:`hwq.layout.regmap.c_header`) into every build.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from hwq.errors import ToolchainError
from hwq.golden.memory import SIM_BASE, MemoryTiming
from hwq.host.device import (
    Device,
    DeviceError,
    DeviceTimeout,
    _check_words,
    _memory_id,
    check_offset,
    check_read,
    check_value,
)
from hwq.layout import regmap
from hwq.serialize import file_lock

from .build import MAKE_OVERRIDES, STAMP_NAME, WaveFormat, _compiler_identity, _log_excerpt
from .build import cache_root as _cache_root
from .toolchain import check_fst_headers, ensure_verilator

__all__ = ["HARNESS", "LIBRARY", "VERILATOR_FLAGS", "CompiledBuild", "CompiledDevice",
           "CompiledModel", "build"]

#: The C++ host, shipped as package data.
HARNESS = Path(__file__).with_name("hwq_harness.cpp")
#: The shared library in a build folder.
LIBRARY = "libhwq_sim.so"
#: Verilator's optimization flags for the compiled model (DESIGN.md section 9.4).
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert")
#: C++ optimization of the model and the harness (verilated.mk's default is -Os).
OPT_FLAGS = ("OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2")
#: Widest signal whose toggles a ``toggles`` build counts (Verilator ``--coverage-max-width``).
TOGGLE_MAX_WIDTH = 65536
#: Reset cycles before the first transaction (as :meth:`hwq.sim.device.SimDevice.reset`).
RESET_CYCLES = 4
#: Bump when the layout of a build folder changes.
_CACHE_FORMAT = 1
TOP = "hwq_core"


@dataclass(frozen=True)
class CompiledBuild:
    """A finished build of the harness library.

    Attributes
    ----------
    build_dir : Path
        the folder (named by ``key``), holding :data:`LIBRARY`.
    key : str
        hash of the build inputs (hex).
    waves : {"vcd", "fst"} or None
        trace format the library can record.
    toggles : bool
        built with ``--coverage-toggle``: the library counts every signal bit's toggles
        (:meth:`CompiledModel.coverage`).
    cached : bool
        this call reused an earlier build.
    seconds : float
        wall time of this call.
    """

    build_dir: Path
    key: str
    waves: WaveFormat | None
    cached: bool
    seconds: float
    toggles: bool = False

    @property
    def library(self) -> Path:
        return self.build_dir / LIBRARY


def build(sources: Sequence[str | os.PathLike], *, waves: WaveFormat | None = None,
          cache_dir: str | os.PathLike | None = None, jobs: int = 2,
          ext_bits: int = 0, toggles: bool = False) -> CompiledBuild:
    """Build the harness library for the core in ``sources``, or reuse a cached build.

    Parameters
    ----------
    sources : sequence of path-like
        the core's Verilog (top module ``hwq_core``), its lint waivers (``.vlt``) and any
        behavioural models it instantiates.
    waves : {"vcd", "fst"}, optional
        build with ``--trace`` / ``--trace-fst`` (a cache entry of its own).
    cache_dir : path-like, optional
        cache folder (:func:`hwq.sim.build.cache_root`).
    jobs : int
        parallel compile jobs.
    ext_bits : int
        the core's ``m_axi`` data width (``CoreConfig.ext_bits``; 0: no port): the harness
        then serves the port from its memory model.
    toggles : bool
        build with ``--coverage-toggle`` (a cache entry of its own; slower to build and run):
        the model counts the toggles of every signal bit.

    Raises
    ------
    ToolchainError
        Verilator or the C++ compiler failed (the message quotes the log).
    """
    start = time.perf_counter()
    if waves not in (None, "vcd", "fst"):
        raise ValueError(f"Waves must be None, 'vcd' or 'fst', not {waves!r}")
    paths = [Path(s) for s in sources]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"Verilog source not found: {path}")
    info = ensure_verilator()
    args = [*VERILATOR_FLAGS, *({"vcd": ["--trace"], "fst": ["--trace-fst"]}.get(waves, [])),
            # every signal counted, however wide (Verilator's default stops at 256 bits: the
            # fetch payloads and the MAC array's side pipeline are wider); the toggle counters
            # make Verilator see the PEs' wires as combinational loops
            *(["--coverage-toggle", "--coverage-max-width", str(TOGGLE_MAX_WIDTH),
               "-Wno-UNOPTFLAT"] if toggles else [])]
    make = [*MAKE_OVERRIDES, *OPT_FLAGS]
    header = regmap.c_header()
    cflags = ["-CFLAGS", f"-DHWQ_EXT_BITS={int(ext_bits)}"] if ext_bits else []
    meta = {"format": _CACHE_FORMAT, "args": args, "make": make, "waves": waves,
            "cflags": cflags,
            "verilator": f"{info.version} {info.root}",
            "c++": _compiler_identity(str(info.tools["c++"])),
            "CXXFLAGS": os.environ.get("CXXFLAGS", "")}
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for blob in (HARNESS.read_bytes(), header.encode(), *(p.read_bytes() for p in paths)):
        digest.update(hashlib.sha256(blob).digest())
    key = digest.hexdigest()[:20]
    root = _cache_root(cache_dir)
    build_dir = root / f"hwq_sim-{key}"
    with file_lock(root / f".hwq_sim-{key}.lock"):
        if _stamp_valid(build_dir, key):
            return CompiledBuild(build_dir, key, waves, True, time.perf_counter() - start,
                                 toggles)
        if waves == "fst":
            check_fst_headers()
        shutil.rmtree(build_dir, ignore_errors=True)
        source_dir = build_dir / "sources"
        source_dir.mkdir(parents=True)
        copies = []
        for index, path in enumerate(paths):  # the build outlives the caller's files
            copies.append(source_dir / f"{index:02d}_{path.name}")
            shutil.copyfile(path, copies[-1])
        (source_dir / "hwq_regs.h").write_text(header)
        harness = source_dir / HARNESS.name
        shutil.copyfile(HARNESS, harness)
        command = [
            str(info.executable), "--cc", "--exe", "--build", "-j", str(jobs),
            "--top-module", TOP, "--prefix", "Vhwq_core", *args,
            "-CFLAGS", "-fPIC", "-CFLAGS", f"-I{source_dir}", *cflags, "-LDFLAGS", "-shared",
            *(x for flag in make for x in ("-MAKEFLAGS", flag)),
            "--Mdir", str(build_dir / "obj"), "-o", str(build_dir / LIBRARY),
            *map(str, copies), str(harness),
        ]
        log = build_dir / "build.log"
        with log.open("w") as out:
            proc = subprocess.run(command, cwd=build_dir, stdout=out, stderr=subprocess.STDOUT,
                                  check=False)
        if proc.returncode != 0 or not (build_dir / LIBRARY).is_file():
            raise ToolchainError(f"Verilator build of the compiled harness failed (log: {log}): "
                                 f"{_log_excerpt(log) or f'exit {proc.returncode}'}")
        shutil.rmtree(build_dir / "obj", ignore_errors=True)  # objects: ~10x the library
        stamp = {"key": key, "built": time.time(), **meta}
        tmp = build_dir / f".{STAMP_NAME}.{os.getpid()}"
        tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True))
        os.replace(tmp, build_dir / STAMP_NAME)
    return CompiledBuild(build_dir, key, waves, False, time.perf_counter() - start, toggles)


def _stamp_valid(build_dir: Path, key: str) -> bool:
    try:
        stamp = json.loads((build_dir / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("key") == key and (build_dir / LIBRARY).is_file()


_u32p = ctypes.POINTER(ctypes.c_uint32)


@cache
def _library(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    handle, u32, u64 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64
    for name, restype, argtypes in (
        ("hwq_open", handle, [ctypes.c_char_p, u32]),
        ("hwq_close", None, [handle]),
        ("hwq_cycle", u64, [handle]),
        ("hwq_read", u32, [handle, u32]),
        ("hwq_write", None, [handle, u32, u32]),
        ("hwq_write_words", None, [handle, u32, u32, _u32p, u64]),
        ("hwq_read_act", None, [handle, u32, _u32p, u64]),
        ("hwq_wait_done", ctypes.c_int, [handle, u64]),
        ("hwq_counters", None, [handle, u32, _u32p]),
        ("hwq_run", None, [handle, u64]),
        ("hwq_ext_load", ctypes.c_int, [handle, _u32p, u64, u64, u32, u32, u64]),
        ("hwq_ext_write", ctypes.c_int, [handle, _u32p, u64, u64]),
        ("hwq_ext_read", ctypes.c_int, [handle, _u32p, u64, u64]),
        ("hwq_coverage", ctypes.c_int, [handle, ctypes.c_char_p]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


class CompiledModel:
    """One Verilated core in this process, out of reset; see :mod:`hwq.sim.compiled`.

    Parameters
    ----------
    library : path-like
        :attr:`CompiledBuild.library`.
    waves : path-like, optional
        record a trace there (a library built with ``waves``); closed by :meth:`close`.
    """

    def __init__(self, library: str | os.PathLike, *, waves: str | os.PathLike | None = None
                 ) -> None:
        self._handle = None
        self._lib = _library(str(Path(library).resolve()))
        trace = os.fsencode(waves) if waves is not None else None
        self._handle = self._lib.hwq_open(trace, RESET_CYCLES)
        if not self._handle:
            raise ValueError("Waves need a library built with waves, not one built without")

    @property
    def cycle(self) -> int:
        """Clock cycles simulated since the model was made (reset included)."""
        return int(self._lib.hwq_cycle(self._live()))

    def read(self, offset: int) -> int:
        """One AXI4-Lite read of the register at byte ``offset``."""
        return int(self._lib.hwq_read(self._live(), offset))

    def write(self, offset: int, value: int) -> None:
        """One AXI4-Lite write."""
        self._lib.hwq_write(self._live(), offset, value)

    def write_words(self, memory: int, base: int, chunks: np.ndarray) -> None:
        """BULK_SEL = ``memory``, BULK_ADDR = ``base``, then ``chunks`` as s_axis beats."""
        c = np.ascontiguousarray(chunks, dtype=np.uint32).reshape(-1)
        self._lib.hwq_write_words(self._live(), memory, base, c.ctypes.data_as(_u32p), c.size)

    def read_act(self, base: int, n: int) -> np.ndarray:
        """``n`` chunks of the activation memory from word ``base`` on (BULK_RDATA)."""
        out = np.empty(n, dtype=np.uint32)
        self._lib.hwq_read_act(self._live(), base, out.ctypes.data_as(_u32p), n)
        return out

    def wait_done(self, max_cycles: int) -> bool:
        """Clock until the irq line rises (enabled on first use); False after ``max_cycles``."""
        return self._lib.hwq_wait_done(self._live(), max_cycles) == 0

    def counters(self, layers: int) -> np.ndarray:
        """``[CYCLES, LAYER_CYCLES of layer 0, ..., of layer layers - 1]``."""
        out = np.empty(layers + 1, dtype=np.uint32)
        self._lib.hwq_counters(self._live(), layers, out.ctypes.data_as(_u32p))
        return out

    def run(self, cycles: int) -> None:
        """``cycles`` cycles of the free-running clock, no transactions."""
        self._lib.hwq_run(self._live(), cycles)

    def ext_load(self, chunks: np.ndarray, base: int, timing: MemoryTiming) -> None:
        """Fill the memory model on ``m_axi`` with ``chunks`` from byte ``base`` on."""
        c = np.ascontiguousarray(chunks, dtype=np.uint32).reshape(-1)
        if self._lib.hwq_ext_load(self._live(), c.ctypes.data_as(_u32p), c.size, base,
                                  timing.latency, round(timing.stall * 1_000_000),
                                  timing.seed) != 0:
            raise ValueError("This compiled core has no m_axi port: build it with ext_bits")

    def ext_write(self, offset: int, chunks: np.ndarray) -> None:
        """Overwrite the memory model's bytes from ``offset`` (of the image) on."""
        c = np.ascontiguousarray(chunks, dtype=np.uint32).reshape(-1)
        if self._lib.hwq_ext_write(self._live(), c.ctypes.data_as(_u32p), c.size, offset) != 0:
            raise ValueError(f"Bytes {offset}..{offset + 4 * c.size - 1} are outside the "
                             "external image (or the core has no m_axi port)")

    def ext_read(self, offset: int, count: int) -> np.ndarray:
        """``count`` chunks of the memory model from byte ``offset`` of the image on."""
        out = np.zeros(count, np.uint32)
        if self._lib.hwq_ext_read(self._live(), out.ctypes.data_as(_u32p), count, offset) != 0:
            raise ValueError(f"Bytes {offset}..{offset + 4 * count - 1} are outside the "
                             "external image (or the core has no m_axi port)")
        return out

    def coverage(self, path: str | os.PathLike | None = None) -> None:
        """Zero the toggle counts (``path`` None) or write them to ``path`` (Verilator's
        ``coverage.dat``); a library built with ``toggles`` only."""
        code = self._lib.hwq_coverage(self._live(), None if path is None else os.fsencode(path))
        if code != 0:
            raise ValueError("Toggle counts need a library built with toggles=True")

    def close(self) -> None:
        """Free the model (and close its trace); further calls raise RuntimeError."""
        if self._handle:
            self._lib.hwq_close(self._handle)
            self._handle = None

    def _live(self) -> int:
        if not self._handle:
            raise RuntimeError("The compiled model is closed")
        return self._handle

    def __del__(self) -> None:
        self.close()


class CompiledDevice(Device):
    """A :class:`CompiledModel` as a :class:`hwq.host.Device`.

    Besides the two register accesses it overrides the bulk transfers, the wait for DONE
    and the counter reads with one library call each (the same transactions, clocked in
    C++), so that Python's share of an inference is a handful of calls.
    """

    name = "compiled"

    def __init__(self, model: CompiledModel, *, memory: MemoryTiming | None = None) -> None:
        self.model = model
        self.memory = memory or MemoryTiming()
        self.memory_latency = self.memory.fixed_latency

    async def write_external(self, image: np.ndarray) -> int:
        """The image into the harness's memory model on ``m_axi``, at :data:`SIM_BASE`."""
        self.model.ext_load(image, SIM_BASE, self.memory)
        return SIM_BASE

    async def write_external_at(self, offset: int, chunks: np.ndarray) -> None:
        try:
            self.model.ext_write(offset, chunks)
        except ValueError as exc:
            raise DeviceError(str(exc)) from None

    async def read_external(self, offset: int, count: int) -> np.ndarray:
        try:
            return self.model.ext_read(offset, count)
        except ValueError as exc:
            raise DeviceError(str(exc)) from None

    async def read_reg(self, offset: int) -> int:
        return self.model.read(check_offset(offset))

    async def write_reg(self, offset: int, value: int) -> None:
        self.model.write(check_offset(offset), check_value(value))

    async def write_words(self, memory: str, base: int, words: np.ndarray) -> None:
        """The words as beats on ``s_axis`` (see :meth:`hwq.host.Device.write_words`)."""
        self.model.write_words(_memory_id(memory), check_value(base), _check_words(words))

    async def read_words(self, memory: str, base: int, count: int, chunks: int) -> np.ndarray:
        check_read(memory, count, chunks)
        return self.model.read_act(check_value(base), count * chunks).reshape(count, chunks)

    async def wait_done(self, *, timeout_s: float, timeout_cycles: int | None = None) -> None:
        """Clock the core until DONE for at most ``timeout_cycles`` cycles (10 M if None)."""
        cycles = timeout_cycles or 10_000_000
        if not self.model.wait_done(cycles):
            raise DeviceTimeout(f"The compiled core did not raise DONE within {cycles} cycles")

    async def cycles(self, layers: int) -> tuple[int, list[int]]:
        counts = self.model.counters(layers)
        return int(counts[0]), [int(c) for c in counts[1:]]

    async def close(self) -> None:
        self.model.close()
