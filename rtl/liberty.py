"""Standard-cell libraries (Liberty ``.lib``): where the default ones are, which cells they hold.

hwq ships no library. The default is the OSU 0.18 um library of Debian's
``qflow-tech-osu018`` (GPL, read where Debian puts it, never copied): installed with
``apt-get install qflow-tech-osu018`` it is under ``/usr/share/qflow/tech``; unpacked with
``apt-get download qflow-tech-osu018 && dpkg-deb -x qflow-tech-osu018_*.deb /opt/hwq-liberty``
(what ``.ci/run`` does: the package's 50 dependencies are not needed) it is under
``/opt/hwq-liberty/usr/share/qflow/tech``. ``--liberty`` takes a path or the short name of one
of these libraries (``osu018``, ``osu035``, ``osu050``).

:func:`read_cells` reads only what the ASIC report needs: each cell's area and whether it is
sequential (has an ``ff`` or ``latch`` group).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from hwq.errors import ToolchainError

__all__ = ["DEBIAN_PACKAGES", "KNOWN", "LIBERTY_ROOTS", "AsicSetupError", "Cell", "buffer_cell",
           "default_liberty", "read_cells", "resolve_liberty"]

#: Folders searched for the qflow technology files, in order.
LIBERTY_ROOTS: tuple[Path, ...] = (Path("/usr/share/qflow/tech"),
                                   Path("/opt/hwq-liberty/usr/share/qflow/tech"))
#: Short name -> file name under ``<root>/<name>/``.
KNOWN: dict[str, str] = {"osu018": "osu018_stdcells.lib", "osu035": "osu035_stdcells.lib",
                         "osu050": "osu050_stdcells.lib"}
#: What to install for the ASIC report (named in the errors).
DEBIAN_PACKAGES = "Debian packages opensta and qflow-tech-osu018"


class AsicSetupError(ToolchainError, ValueError):
    """OpenSTA or the Liberty library is missing or unusable: a setup to fix before any
    synthesis (the CLI exits 2, as for bad usage)."""


@dataclass(frozen=True)
class Cell:
    """One library cell: ``area`` in the library's area unit (um^2 for OSU), ``sequential``
    when it has an ``ff``/``latch`` group."""

    name: str
    area: float
    sequential: bool
    #: input pin capacitance when the cell is a buffer (one input ``A``, output function
    #: ``"A"``), else None
    buffer_cap: float | None = None
    #: a sequential cell's data pin (its ``next_state`` or ``data_in`` when that is one pin
    #: name, e.g. ``D``), else None
    data_pin: str | None = None


def resolve_liberty(liberty: str | Path | None) -> Path:
    """The Liberty file for ``liberty``: a path, a short name from :data:`KNOWN`, or None
    (OSU 0.18 um). Raises :class:`AsicSetupError` naming what to install or the
    file that is missing."""
    if liberty is None or str(liberty) in KNOWN:
        name = "osu018" if liberty is None else str(liberty)
        for root in LIBERTY_ROOTS:
            path = root / name / KNOWN[name]
            if path.is_file():
                return path
        package = f"qflow-tech-{name}"
        raise AsicSetupError(
            f"Liberty library {name} not found in {', '.join(map(str, LIBERTY_ROOTS))}: install "
            f"the Debian package {package} (apt-get install {package}, or apt-get download "
            f"{package} && dpkg-deb -x {package}_*.deb /opt/hwq-liberty) or give --liberty PATH")
    path = Path(liberty).expanduser()
    if not path.is_file():
        raise AsicSetupError(f"Liberty file {str(path)!r} does not exist or is not a file "
                             f"(--liberty takes a .lib path or one of {', '.join(KNOWN)})")
    return path


def default_liberty() -> Path:
    """The OSU 0.18 um library (:func:`resolve_liberty` of None)."""
    return resolve_liberty(None)


_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CELL = re.compile(r"\bcell\s*\(\s*\"?([^\s\")]+)\"?\s*\)\s*\{")
_AREA = re.compile(r"^\s*area\s*:\s*([0-9.eE+-]+)\s*;", re.M)
_SEQ = re.compile(r"\b(ff|latch|ff_bank|latch_bank|statetable)\s*\(")
_DATA = re.compile(r"\b(?:next_state|data_in)\s*:\s*\"\s*(\w+)\s*\"")
_PIN = re.compile(r"\bpin\s*\(\s*\"?(\w+)\"?\s*\)\s*\{")
_DIRECTION = re.compile(r"\bdirection\s*:\s*\"?(\w+)")
_FUNCTION = re.compile(r"\bfunction\s*:\s*\"\s*\(?\s*(\w+)\s*\)?\s*\"")
_CAP = re.compile(r"\bcapacitance\s*:\s*([0-9.eE+-]+)")


_BRACE = re.compile(r"[{}]")


def _group(text: str, start: int) -> str:
    """The body of the ``{ ... }`` group opened just before ``start``."""
    depth = 1
    for brace in _BRACE.finditer(text, start):
        depth += 1 if brace.group() == "{" else -1
        if not depth:
            return text[start:brace.start()]
    return text[start:]


def _buffer_cap(body: str) -> float | None:
    """Input capacitance of a buffer cell body (one input, output function = that input)."""
    pins = {m.group(1): _group(body, m.end()) for m in _PIN.finditer(body)}
    ins = {n: b for n, b in pins.items() if (_DIRECTION.search(b) or [0, ""])[1] == "input"}
    outs = [b for b in pins.values() if (_DIRECTION.search(b) or [0, ""])[1] == "output"]
    if len(ins) != 1 or len(outs) != 1:
        return None
    (name, pin), = ins.items()
    function = _FUNCTION.search(outs[0])
    cap = _CAP.search(pin)
    if function is None or function.group(1) != name or cap is None:
        return None
    return float(cap.group(1))


def read_cells(path: str | Path) -> dict[str, Cell]:
    """Cells of the Liberty file ``path``: name -> :class:`Cell` (see :func:`_read_cells`;
    memoized by path, size and modification time)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise AsicSetupError(f"Liberty file {str(path)!r} cannot be read: "
                             f"{exc.strerror or exc}") from exc
    return dict(_read_cells(str(path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _read_cells(name: str, size: int, mtime_ns: int) -> dict[str, Cell]:
    """Cells of the Liberty file ``path``: name -> :class:`Cell`.

    Each ``cell (NAME) { ... }`` group is cut out by matching braces; its own ``area`` is the
    first ``area :`` line inside it. Raises :class:`AsicSetupError` naming the
    file when it cannot be read or holds no cell with an area.
    """
    path = Path(name)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise AsicSetupError(f"Liberty file {str(path)!r} cannot be read: "
                             f"{exc.strerror or exc}") from exc
    text = _COMMENT.sub("", text)
    cells: dict[str, Cell] = {}
    for match in _CELL.finditer(text):
        body = _group(text, match.end())
        area = _AREA.search(body)
        if area is not None:
            seq = _SEQ.search(body) is not None
            data = _DATA.search(body) if seq else None
            cells[match.group(1)] = Cell(match.group(1), float(area.group(1)), seq,
                                         _buffer_cap(body), data.group(1) if data else None)
    if not cells:
        raise AsicSetupError(f"Liberty file {str(path)!r} has no cell with an area: not a "
                             "standard-cell library")
    return cells


def buffer_cell(cells: dict[str, Cell]) -> Cell:
    """The smallest buffer of the library (ABC's driving cell and load for buffering)."""
    buffers = [c for c in cells.values() if c.buffer_cap is not None]
    if not buffers:
        raise AsicSetupError("The Liberty library has no buffer cell (one input A, function "
                             "\"A\"): ABC cannot buffer high-fanout nets")
    return min(buffers, key=lambda c: (c.area, c.name))
