"""Toggle rates of every register bit of the core over a run of real inputs.

:func:`measure_toggles` builds the compiled harness with Verilator's ``--coverage-toggle``
(:func:`hwq.sim.compiled.build` with ``toggles=True``): the model counts, for every signal
bit, its 0->1 and 1->0 changes between evaluations, in C++ as it runs (no waveform is
written or parsed, so the cost is a few instructions per signal per cycle). The host
runtime loads the Program, the counts are zeroed, every input runs (one START each, its
input written and its output read over the bus, as in :func:`hwq.sim.harness.run_batch`),
then the counts are written out and read back (:func:`read_coverage`).

Toggle rate of a bit = its toggles / the cycles of that inference phase (bus transfers
included): transitions per clock cycle, what OpenSTA's ``set_power_activity`` takes.
Results are cached by content: ``<cache>/activity/<key>.json``, the key hashing the build
(Verilog, harness, flags, toolchain), the Program and the inputs.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hwq.layout.program import Program

__all__ = ["FORMAT", "ROOT", "measure_toggles", "read_coverage"]

#: Hierarchy prefix of the core in the Verilator model (its signals: ``TOP.hwq_core.mac.x``).
ROOT = "TOP.hwq_core"
#: Bump when the cached result changes.
FORMAT = 2

_POINT = re.compile(r"^C '(.*)' (\d+)$")
_DIRECTION = re.compile(r":(0->1|1->0)$")
_ESCAPE = re.compile(r"__0([0-9a-fA-F]{2})")


def _decode(name: str) -> str:
    """Verilator's mangled name with its ``__0XX`` escapes decoded (``__02e`` -> ``.``)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def read_coverage(text: str) -> dict[str, int]:
    """Toggles per signal bit from Verilator's ``coverage.dat`` (toggle points only).

    Returns
    -------
    dict
        ``"<hierarchy>.<signal>[<bit>]"`` (``[<bit>]`` absent for a 1-bit signal; the
        Verilog is flat, so a core signal reads ``TOP.hwq_core.mac.acc0[3]``; Verilator's
        ``__0XX`` escapes decoded) -> 0->1 plus 1->0 changes.
    """
    counts: dict[str, int] = {}
    for line in text.splitlines():
        m = _POINT.match(line)
        if m is None:
            continue
        fields = dict(item.split("\x02", 1) for item in m.group(1).split("\x01") if item)
        if not fields.get("page", "").startswith("v_toggle"):
            continue
        name = _decode(_DIRECTION.sub("", fields["o"]))
        key = f"{_decode(fields['h'])}.{name}"
        counts[key] = counts.get(key, 0) + int(m.group(2))
    return counts


def _key(build_key: str, program: Program, x: np.ndarray) -> str:
    digest = hashlib.sha256(f"{FORMAT}:{build_key}:{x.dtype}:{x.shape}".encode())
    digest.update(hashlib.sha256(program.to_bytes()).digest())
    digest.update(hashlib.sha256(np.ascontiguousarray(x).tobytes()).digest())
    return digest.hexdigest()[:24]


def measure_toggles(program: Program, x: np.ndarray, *, cache_dir: str | Path | None = None,
                    cache: bool = True, progress: Callable[[str], None] | None = None
                    ) -> dict[str, Any]:
    """Run inputs ``x`` on the core of ``program`` and count every signal bit's toggles.

    Parameters
    ----------
    program : Program
        the compiled network (its config gives the core).
    x : ndarray
        ``(N, *input_shape)`` integer inputs (as :func:`hwq.sim.simulate.simulate`).
    cache : bool
        reuse (and store) the result in ``<cache>/activity/``.

    Returns
    -------
    dict
        ``images`` (N), ``cycles`` (clock cycles of the inference phase: bus transfers and
        compute), ``compute_cycles`` (sum of the CYCLES register), ``toggles``
        (:func:`read_coverage` of the phase), ``key``, ``seconds``, ``cached``.
    """
    import asyncio

    from hwq.host.runtime import Runtime
    from hwq.rtl.generate import cached_generate
    from hwq.serialize import atomic_write
    from hwq.sim import compiled
    from hwq.sim.build import cache_root
    from hwq.sim.simulate import _write_sources

    say = progress or (lambda message: None)
    if not isinstance(program, Program):
        raise TypeError(f"Program must be a hwq Program, not {type(program).__name__}")
    program.pack_input(x)  # shape and range, before the build
    x = np.asarray(x, dtype=np.int64)
    t0 = time.monotonic()
    verilog = cached_generate(program.config, cache_dir=cache_dir)
    with tempfile.TemporaryDirectory(prefix="hwq-toggles-") as tmp:
        job = Path(tmp)
        say("Verilator build with --coverage-toggle (cached by hash) ...")
        build = compiled.build(_write_sources(verilog, job), cache_dir=cache_dir, toggles=True,
                               ext_bits=program.config.ext_bits)
        key = _key(build.key, program, x)
        path = Path(cache_root(cache_dir)) / "activity" / f"{key}.json"
        if cache and path.is_file():
            try:
                found = json.loads(path.read_text())
            except (OSError, ValueError):
                found = None
            if isinstance(found, dict) and found.get("key") == key:
                say(f"toggle counts cached: {path}")
                return {**found, "cached": True}
        say(f"counting toggles over {x.shape[0]} inputs ...")
        model = compiled.CompiledModel(build.library)
        try:
            runtime = Runtime(compiled.CompiledDevice(model))
            asyncio.run(runtime.load(program))
            model.coverage()
            c0 = model.cycle
            result = asyncio.run(runtime.infer(x))
            cycles = model.cycle - c0
            dat = job / "coverage.dat"
            model.coverage(dat)
            text = dat.read_text(errors="replace")
        finally:
            model.close()
    out = {"key": key, "images": int(x.shape[0]), "cycles": int(cycles),
           "compute_cycles": int(np.sum(result.cycles)), "root": ROOT,
           "toggles": read_coverage(text), "seconds": round(time.monotonic() - t0, 1)}
    if cache:
        atomic_write(path, json.dumps(out).encode())
    return {**out, "cached": False}
