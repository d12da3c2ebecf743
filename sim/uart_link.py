"""Run a Program through the UART host link on the Verilated core (``hwq_linked``).

:func:`simulate_uart` builds :func:`hwq.rtl.linked_core.linked_verilog` with Verilator
(cached like every build) and runs :mod:`hwq.sim.tb_uart_link`: ``Runtime`` over
``SerialDevice`` on a pseudo-terminal, the bits on the simulated UART pins, optional byte
faults. The link runs at ``clock / divider`` in simulated time.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwq.errors import CheckFailed
from hwq.host.serial import LinkError
from hwq.layout.program import Program

__all__ = ["simulate_uart"]


def simulate_uart(program: Program, x: np.ndarray, *, divider: int = 4, max_burst: int = 64,
                  faults: Mapping[str, Any] | None = None, timeout_s: float = 10.0,
                  settle_s: float = 0.3, cache_dir: str | Path | None = None,
                  wall_timeout_s: float = 1800.0) -> dict[str, Any]:
    """Outputs, cycle counters and link statistics of ``x`` run through the link.

    Parameters
    ----------
    faults : mapping, optional
        ``{"drop": {...}, "corrupt": {...}}`` for :class:`hwq.sim.uart_pty.PtyUart`.
    timeout_s, settle_s : float
        the host's reply timeout and quiet time before a retry (wall-clock seconds; the
        simulated link is slower than a real one).

    Returns
    -------
    dict
        ``outputs``, ``cycles``, ``layer_cycles``, ``model_layer_cycles`` (arrays as in
        :class:`hwq.host.runtime.InferenceResult`), ``commands``, ``retries``, ``failures``
        (why each failed attempt failed), ``load_s``, ``infer_s``, ``sim_cycles``,
        ``build_cached``.

    Raises
    ------
    LinkError
        the host's link failed (its message).
    CheckFailed
        the simulation itself failed.
    """
    from hwq.rtl.generate import TOP as CORE_TOP
    from hwq.rtl.generate import cached_generate
    from hwq.rtl.linked_core import TOP, linked_verilog
    from hwq.rtl.lint import waiver_file
    from hwq.sim import build as sim_build
    from hwq.sim.simulate import BUILD_ARGS

    with tempfile.TemporaryDirectory(prefix="hwq-uart-") as folder:
        job = Path(folder)
        sources = []
        for name, text in ((CORE_TOP, cached_generate(program.config, cache_dir=cache_dir)),
                           (TOP, linked_verilog(divider=divider, max_burst=max_burst))):
            (job / f"{name}.v").write_text(text)
            (job / f"{name}.vlt").write_text(waiver_file(f"{name}.v"))
            sources += [job / f"{name}.vlt", job / f"{name}.v"]
        build = sim_build.build(sources, TOP, build_args=BUILD_ARGS, cache_dir=cache_dir)
        program.save(job / "program.hwqp")
        np.save(job / "inputs.npy", np.asarray(x))
        (job / "params.json").write_text(json.dumps({
            "divider": divider, "faults": dict(faults or {}), "timeout_s": timeout_s,
            "settle_s": settle_s, "run_timeout_s": 120.0}))
        run = sim_build.run_tests(build, "hwq.sim.tb_uart_link", timeout=wall_timeout_s,
                                  extra_env={"HWQ_UART_JOB": str(job)})
        if (job / "error.txt").exists():
            message = (job / "error.txt").read_text().splitlines()[0]
            if message.startswith("LinkError: "):
                raise LinkError(message.removeprefix("LinkError: "))
            raise CheckFailed(f"the host failed over the simulated link: {message}")
        if not run.ok:
            raise CheckFailed(f"simulation failed: {'; '.join(run.failures) or run.error}")
        r = np.load(job / "results.npz")
        out = {k: r[k] for k in ("outputs", "cycles", "layer_cycles", "model_layer_cycles")}
        out.update({k: int(r[k]) for k in ("commands", "retries", "sim_cycles")})
        out.update(failures=[str(f) for f in r["failures"]], load_s=float(r["load_s"]),
                   infer_s=float(r["infer_s"]),
                   build_cached=bool(build.cached))
        return out
