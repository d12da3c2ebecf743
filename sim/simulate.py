"""``simulate()``: run a network or Program on the Verilated core, cycle-accurately.

The core for ``config`` is generated (Amaranth -> Verilog), built with Verilator (cached by
a hash of the Verilog and flags, so a second run of the same config does not rebuild), and
the cocotb test :mod:`hwq.sim.core_tb` drives it through the host runtime
(:class:`hwq.sim.device.SimDevice`): the Program's images go in over the bulk path once,
then every input runs with one START while Python waits on the interrupt.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwq.config import CoreConfig
from hwq.errors import CheckFailed
from hwq.ir import QuantizedNetwork
from hwq.layout.program import Program

#: Verilator flags of the core build: two compile jobs.
BUILD_ARGS = ("-j", "2")


@dataclass
class SimResult:
    """Outputs, cycle counters and speed of one simulation run."""

    outputs: np.ndarray
    cycles: np.ndarray              # (N,) CYCLES register per inference
    layer_cycles: np.ndarray        # (N, layers) LAYER_CYCLES per inference
    model_layer_cycles: np.ndarray  # (layers,) the cycle model
    layer_names: list[str]
    build_seconds: float
    build_cached: bool
    load_seconds: float
    infer_seconds: float
    infer_cycles: int               # simulated cycles of the inference phase (bus + compute)
    free_run_cycles_per_s: float | None  # same build, Python idle, one Timer (free_run=True)
    verilog_lines: int
    test_dir: str | None = None
    waves_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sim_cycles_per_s(self) -> float:
        """End-to-end simulated cycles per wall second of the inference phase."""
        return self.infer_cycles / self.infer_seconds if self.infer_seconds > 0 else 0.0

    def cycle_model_mismatches(self) -> list[str]:
        diff = (self.layer_cycles != self.model_layer_cycles[None]).any(axis=0)
        return [self.layer_names[i] for i in np.flatnonzero(diff)]


def simulate(
    network_or_program: QuantizedNetwork | Program,
    config: CoreConfig | None,
    inputs: object,
    *,
    waves: bool | str = False,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    timeout_s: float | None = None,
    free_run: bool = False,
) -> SimResult:
    """Run ``inputs`` (``(N, *input_shape)`` integers) through the simulated core.

    Parameters
    ----------
    network_or_program : QuantizedNetwork or Program
        a network is compiled for ``config`` first.
    config : CoreConfig, optional
        the core; a Program carries its own (``None`` or equal to it).
    waves : bool or {"vcd", "fst"}
        record a waveform of the run (kept in ``result.waves_file``); FST needs the lz4 and
        zlib headers, ``"vcd"`` works everywhere.
    progress : bool
        a progress bar on stderr.
    free_run : bool
        after the inputs, also time the same build running :data:`hwq.sim.core_tb.FREE_RUN_CYCLES`
        cycles with Python idle (``result.free_run_cycles_per_s``, else ``None``): the speed
        the host-runtime overhead is measured against.
    """
    from hwq.layout.compiler import compile as compile_network
    from hwq.rtl.dsp import write_sim_models
    from hwq.rtl.generate import TOP, cached_generate
    from hwq.rtl.lint import waiver_file
    from hwq.sim import build as sim_build

    if isinstance(network_or_program, Program):
        program = network_or_program
        if config is not None:
            program.check_config(config)  # the same core, built with its own ``dsp``
        else:
            config = program.config
    elif isinstance(network_or_program, QuantizedNetwork):
        if config is None:
            raise ValueError("simulate() needs a CoreConfig to compile a network for")
        program = compile_network(network_or_program, config)
    else:
        raise TypeError("simulate() takes a QuantizedNetwork or a Program, not "
                        f"{type(network_or_program).__name__}")
    x = program.pack_input(inputs)  # validates shape and range before the slow steps
    n = x.shape[0]
    x = np.asarray(inputs, dtype=np.int64)

    verilog = cached_generate(config, cache_dir=cache_dir)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hwq-sim-") as tmp:
        job = Path(tmp)
        source = job / f"{TOP}.v"
        source.write_text(verilog)
        waivers = job / "hwq_waivers.vlt"  # the lint waivers of generated code (hwq.rtl.lint)
        waivers.write_text(waiver_file(source.name))
        wave_kind = {True: True, False: None}.get(waves, waves) if waves else None
        models = write_sim_models(verilog, job)  # behavioural DSP blocks (dsp="ecp5")
        build = sim_build.build([source, waivers, *models], TOP, build_args=BUILD_ARGS,
                                waves=wave_kind, cache_dir=cache_dir)
        build_seconds = time.perf_counter() - t0
        program.save(job / "program.hwqp")
        np.save(job / "inputs.npy", x)
        result_box: dict[str, Any] = {}

        def target() -> None:
            try:
                result_box["result"] = sim_build.run_tests(
                    build, "hwq.sim.core_tb",
                    extra_env={"HWQ_SIM_JOB": str(job), "HWQ_SIM_FREE_RUN": str(int(free_run))},
                    waves=bool(waves), timeout=timeout_s,
                    test_dir=job / "run" if waves else None)
            except BaseException as exc:  # re-raised in the caller's thread
                result_box["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        _follow(thread, job / "progress", n, progress)
        if "error" in result_box:
            raise result_box["error"]
        run = result_box["result"]
        if not run.ok:
            detail = "; ".join(run.failures) or run.error or "no result"
            log = f" (log: {run.log_file})" if run.log_file else ""
            raise CheckFailed(f"simulation failed: {detail}{log}")
        r = np.load(job / "results.npz")
        waves_file = None
        if waves and run.waves_file is not None:
            keep = Path(tempfile.mkdtemp(prefix="hwq-waves-")) / Path(run.waves_file).name
            Path(run.waves_file).replace(keep)
            waves_file = str(keep)
        return SimResult(
            outputs=r["outputs"],
            cycles=r["cycles"],
            layer_cycles=r["layer_cycles"],
            model_layer_cycles=r["model_layer_cycles"],
            layer_names=[str(layer["name"]) for layer in program.layers],
            build_seconds=build_seconds,
            build_cached=bool(build.cached),
            load_seconds=float(r["load_seconds"]),
            infer_seconds=float(r["infer_seconds"]),
            infer_cycles=int(r["infer_cycles"]),
            free_run_cycles_per_s=(float(r["free_run_cycles"]) / float(r["free_run_seconds"])
                                   if free_run else None),
            verilog_lines=verilog.count("\n"),
            waves_file=waves_file,
        )


def _follow(thread: threading.Thread, progress_file: Path, total: int, show: bool) -> None:
    """Show the simulation's progress (samples done) while ``thread`` runs it."""
    from tqdm import tqdm

    with tqdm(total=total, desc="simulate", unit="img", disable=not show, leave=False) as bar:
        while thread.is_alive():
            thread.join(0.25)
            try:
                done = int(progress_file.read_text() or 0)
            except (FileNotFoundError, ValueError):
                continue
            bar.update(done - bar.n)
