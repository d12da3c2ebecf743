"""``hwq doctor``: print tool versions and check the simulation toolchain end to end.

The self-check takes a few seconds: it elaborates a tiny Amaranth design (an 8-bit registered
adder), converts it to Verilog through Yosys, builds it with Verilator (cached, so later runs
skip the compile) and runs a cocotb test that checks every output exactly. Exit code 0 when
everything works, 1 naming the first thing that does not.

Heavy imports (Amaranth, cocotb) happen inside the checks, so that a missing or broken
package is reported as a failed check instead of a crash.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwq.errors import HwqError

from .toolchain import versions as tool_versions

__all__ = ["TOPLEVEL", "Check", "DoctorReport", "configure", "diagnose", "doctor_design", "run"]

#: Compile the C++ model with two jobs: compiling Verilator's runtime is most of the cost.
FAST_COMPILE = ("-j", "2")
#: Verilog module name of the self-check design.
TOPLEVEL = "hwq_doctor_adder"

#: cocotb module (inside this package) that tests the self-check design.
TEST_MODULE = "hwq.sim.tb_doctor"

#: Wall-clock limit of the self-check simulation, in seconds.
TEST_TIMEOUT = 60.0

_VERSION_ORDER = ("python", "numpy", "torch", "amaranth", "yosys", "verilator", "cocotb")


@dataclass
class Check:
    """One step of the self-check.

    Attributes
    ----------
    name : str
        Short name (``"toolchain"``, ``"verilog"``, ...).
    ok : bool
        The step passed. A skipped step is not ok.
    seconds : float
        Wall time of the step.
    detail : str
        What was found, or why it failed or was skipped.
    skipped : bool
        Not run because a step it needs failed.
    """

    name: str
    ok: bool
    seconds: float
    detail: str
    skipped: bool = False

    def line(self) -> str:
        """One line of the human report."""
        if self.skipped:
            return f"  {self.name:<16} {'':>7}  skipped: {self.detail}"
        status = "ok" if self.ok else "FAILED"
        return f"  {self.name:<16} {self.seconds:5.2f} s  {status}: {self.detail}"


@dataclass
class DoctorReport:
    """Everything ``hwq doctor`` found.

    Attributes
    ----------
    versions : dict of str to str
        From :func:`hwq.sim.toolchain.versions`.
    checks : list of Check
        In the order they ran.
    seconds : float
        Total wall time.
    cache_dir : Path or None
        Build cache used by the self-check (None without self-check).
    """

    versions: dict[str, str]
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    cache_dir: Path | None = None

    @property
    def ok(self) -> bool:
        """Every check passed."""
        return all(check.ok for check in self.checks)

    @property
    def error(self) -> str | None:
        """The first failure as one line (``"name: reason"``), or None."""
        for check in self.checks:
            if not check.ok and not check.skipped:
                return f"{check.name}: {check.detail}"
        return None

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {
            "ok": self.ok,
            "versions": dict(self.versions),
            "checks": [
                {**asdict(check), "seconds": round(check.seconds, 3)} for check in self.checks
            ],
            "seconds": round(self.seconds, 3),
            "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
            "error": self.error,
        }


def doctor_design() -> Any:
    """Return the self-check design: an 8-bit adder with a registered 9-bit sum.

    Ports: ``a``, ``b`` (in, 8 bits), ``sum`` (out, 9 bits); ``sum`` takes ``a + b`` on each
    rising edge of the ``sync`` clock and is cleared by reset. Imports Amaranth.

    Returns
    -------
    amaranth.lib.wiring.Component
    """
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class DoctorAdder(wiring.Component):
        """``sum <= a + b`` on every clock edge; 0 after reset."""

        def __init__(self) -> None:
            # a local class cannot use annotations under `from __future__ import annotations`
            super().__init__({"a": In(8), "b": In(8), "sum": Out(9)})

        def elaborate(self, platform: Any) -> Module:
            m = Module()
            m.d.sync += self.sum.eq(self.a + self.b)
            return m

    return DoctorAdder()


def _versions_check(found: dict[str, str], skip: tuple[str, ...] = ()) -> Check:
    """Every version was found (``skip``: names another check reports on)."""
    missing = [
        f"{name}: {value.removeprefix('error: ')}"
        for name, value in found.items()
        if value.startswith("error: ") and name not in skip
    ]
    if missing:
        return Check("versions", False, 0.0, "; ".join(missing))
    return Check("versions", True, 0.0, "all found")


def _run_step(name: str, step: Callable[[], str]) -> Check:
    start = time.perf_counter()
    try:
        detail = step()
        ok = True
    except HwqError as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # report every failure, never crash the doctor
        detail, ok = f"{type(exc).__name__}: {exc}".strip().splitlines()[0], False
    return Check(name, ok, time.perf_counter() - start, detail)


def diagnose(
    *,
    selfcheck: bool = True,
    cache_dir: str | Path | None = None,
    progress: Callable[[DoctorReport, Check], None] | None = None,
) -> DoctorReport:
    """Collect versions and, unless ``selfcheck`` is False, run the self-check.

    Parameters
    ----------
    selfcheck : bool
        Run the toolchain, Verilog, Verilator build and cocotb test checks.
    cache_dir : path-like, optional
        Build cache (see :func:`hwq.sim.build.cache_root`).
    progress : callable, optional
        Called as ``progress(report, check)`` as soon as each check finishes.

    Returns
    -------
    DoctorReport
        Never raises for a broken toolchain: failures are checks with ``ok=False``.
    """
    start = time.perf_counter()
    report = DoctorReport(versions=tool_versions())

    def add(check: Check) -> Check:
        report.checks.append(check)
        if progress is not None:
            progress(report, check)
        return check

    # with the self-check, a Verilator problem is the toolchain check's to report
    add(_versions_check(report.versions, skip=("verilator",) if selfcheck else ()))
    if selfcheck:
        _selfcheck(report, add, cache_dir)
    report.seconds = time.perf_counter() - start
    return report


def _selfcheck(
    report: DoctorReport, add: Callable[[Check], Check], cache_dir: str | Path | None
) -> None:
    from . import build as sim_build

    state: dict[str, Any] = {}

    def toolchain() -> str:
        from .toolchain import ensure_verilator

        info = ensure_verilator()
        tools = ", ".join(info.tools)
        return f"Verilator {info.version} ({info.origin}, {info.root}); {tools} on PATH"

    def verilog() -> str:
        from amaranth.back import verilog as amaranth_verilog

        text = amaranth_verilog.convert(doctor_design(), name=TOPLEVEL)
        if f"module {TOPLEVEL}(" not in text:
            raise HwqError(f"Yosys output lacks module {TOPLEVEL}")
        state["verilog"] = text
        return f"{len(text.splitlines())} lines from Amaranth through Yosys"

    def verilator_build() -> str:
        with tempfile.TemporaryDirectory(prefix="hwq-doctor-") as folder:
            source = Path(folder) / f"{TOPLEVEL}.v"
            source.write_text(state["verilog"])
            result = sim_build.build(source, TOPLEVEL, cache_dir=cache_dir, waves=False,
                                     build_args=FAST_COMPILE)
        state["build"] = result
        how = "cached" if result.cached else "compiled"
        return f"{how}: {result.build_dir}"

    def cocotb_test() -> str:
        result = sim_build.run_tests(state["build"], TEST_MODULE, waves=False, timeout=TEST_TIMEOUT)
        if not result.ok:
            raise HwqError(result.summary())
        return f"{result.passed} of {result.tests} tests passed, outputs exact"

    try:
        report.cache_dir = sim_build.cache_root(cache_dir)
    except Exception:  # platformdirs missing: the build check reports it
        report.cache_dir = None

    needs = {
        "toolchain": (toolchain, ()),
        "verilog": (verilog, ()),
        "verilator build": (verilator_build, ("toolchain", "verilog")),
        "cocotb test": (cocotb_test, ("verilator build",)),
    }
    passed: set[str] = set()
    for name, (step, requires) in needs.items():
        failed = [r for r in requires if r not in passed]
        if failed:
            add(Check(name, False, 0.0, f"needs {' and '.join(failed)}", skipped=True))
            continue
        if add(_run_step(name, step)).ok:
            passed.add(name)


def _version_table(found: dict[str, str]) -> str:
    lines = ["versions"]
    for name in (*_VERSION_ORDER, *(k for k in found if k not in _VERSION_ORDER)):
        if name in found:
            lines.append(f"  {name:<10} {found[name]}")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``hwq doctor``'s options."""
    parser.add_argument(
        "--no-selfcheck",
        action="store_true",
        help="only print versions; skip the Amaranth -> Verilator -> cocotb self-check",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="Verilator build cache (default: $HWQ_CACHE_DIR or the user cache folder)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``hwq doctor``; return 0 when everything works, 1 otherwise."""
    as_json = getattr(args, "json", False)
    if args.cache_dir is not None:
        from hwq.cli import check_output

        check_output(args.cache_dir, "--cache-dir", folder=True)

    def show(report: DoctorReport, check: Check) -> None:
        # human output streams: the table and each check appear before the slow steps run
        if check.name == "versions":
            print(_version_table(report.versions))
            print("checks")
        print(check.line(), flush=True)

    report = diagnose(
        selfcheck=not args.no_selfcheck,
        cache_dir=args.cache_dir,
        progress=None if as_json else show,
    )
    from hwq.cli import emit

    if report.ok:
        summary = f"ok: everything works ({report.seconds:.1f} s)"
    else:
        summary = f"FAILED: {report.error} ({report.seconds:.1f} s)"
    emit(args, {**report.as_dict(), "exit_code": 0 if report.ok else 1}, summary)
    if not report.ok:
        print(f"hwq doctor: error: {report.error}", file=sys.stderr)
        return 1
    return 0
