"""``simulate()``: run a network or Program on the Verilated core, cycle-accurately.

The core for ``config`` is generated (Amaranth -> Verilog; the Verilog depends on the
configuration only, the program's images are loaded through the bulk path) and built with
Verilator, cached by a hash of the Verilog and flags, on one of two backends:

``compiled`` (default)
    the Verilated model plus a C++ host in one shared library (:mod:`hwq.sim.compiled`):
    the host runtime (:class:`hwq.host.Runtime`) drives it through ctypes, the clock runs
    in C++; ``jobs`` worker processes split the inputs (:mod:`hwq.sim.harness`).
``cocotb``
    the cocotb test :mod:`hwq.sim.tb_core` drives the same runtime through cocotbext-axi
    (:class:`hwq.sim.device.SimDevice`): the protocol-checked path, several times slower.

Either way the Program's images go in over the bulk path once, then every input runs with
one START while the host waits on the interrupt; both give the same outputs and counters.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwq.arguments import integer
from hwq.config import CoreConfig
from hwq.errors import CheckFailed
from hwq.golden.memory import AXI_RAM_LATENCY, MemoryTiming
from hwq.host.runtime import cycle_model_mismatches, model_layer_cycles
from hwq.ir import QuantizedNetwork
from hwq.layout.program import Program
from hwq.sim.harness import FREE_RUN_CYCLES

#: Verilator flags of the core build: two compile jobs.
BUILD_ARGS = ("-j", "2")
#: The simulation backends, the default first.
BACKENDS = ("compiled", "cocotb")
#: The memory model on ``m_axi`` of the compiled backend unless one is given.
DEFAULT_MEMORY = MemoryTiming(latency=4)
#: Simulated cycles that make one more worker process worth its start-up (about 1 s).
CYCLES_PER_JOB = 1_000_000


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
    free_run_cycles_per_s: float | None  # same build, no transactions (free_run; jobs > 1: mean)
    verilog_lines: int
    test_dir: str | None = None
    waves_file: str | None = None
    backend: str = "cocotb"
    jobs: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    stall_cycles: np.ndarray | None = None  # (N,) cycles waiting for weight loads
    ext_beats: np.ndarray | None = None     # (N,) m_axi read beats
    model_is_bound: bool = False            # external weights on a memory with stalls

    @property
    def sim_cycles_per_s(self) -> float:
        """End-to-end simulated cycles per wall second of the inference phase."""
        return self.infer_cycles / self.infer_seconds if self.infer_seconds > 0 else 0.0

    def cycle_model_mismatches(self) -> list[str]:
        """Names of the layers whose measured cycles differ from the model in any run
        (are below it, when the model is a bound: see :mod:`hwq.golden.memory`)."""
        return cycle_model_mismatches(self.layer_cycles, self.model_layer_cycles,
                                      self.layer_names, bound=self.model_is_bound)


def simulate(
    network_or_program: QuantizedNetwork | Program,
    config: CoreConfig | None,
    inputs: object,
    *,
    backend: str = "compiled",
    jobs: int | None = None,
    waves: bool | str = False,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    timeout_s: float | None = None,
    free_run: bool = False,
    free_run_cycles: int | None = None,
    memory: MemoryTiming | None = None,
) -> SimResult:
    """Run ``inputs`` (``(N, *input_shape)`` integers) through the simulated core.

    Parameters
    ----------
    network_or_program : QuantizedNetwork or Program
        a network is compiled for ``config`` first.
    config : CoreConfig, optional
        the core; a Program carries its own (``None`` or equal to it).
    backend : {"compiled", "cocotb"}
        the C++ harness (fast) or cocotb (protocol-checked); see the module docstring.
    jobs : int, optional
        worker processes of the compiled backend, each with its own model and a
        contiguous range of the inputs (outputs stay in input order). Default
        (:func:`default_jobs`): the usable CPUs, fewer when the batch is too short to pay
        for them, 1 with ``waves``; ``1`` runs in this process.
    waves : bool or {"vcd", "fst"}
        record a waveform of the run (kept in ``result.waves_file``); FST needs the lz4 and
        zlib headers, ``"vcd"`` works everywhere. One process only (``jobs`` 1).
    progress : bool
        a progress bar on stderr.
    timeout_s : float, optional
        wall-clock limit of the simulator (cocotb) or of the worker processes
        (``jobs`` > 1); every inference is also bounded by the cycle model plus
        :data:`hwq.host.runtime.TIMEOUT_SLACK_CYCLES` cycles.
    free_run : bool
        also time the same build free-running, no transactions (compiled: half before the
        inputs, half after; cocotb: after, Python idle): ``result.free_run_cycles_per_s``,
        else ``None``, the speed the host's overhead is measured against.
    free_run_cycles : int, optional
        cycles of that reference; default :data:`hwq.sim.harness.FREE_RUN_CYCLES`.
    memory : MemoryTiming, optional
        the memory model on the core's ``m_axi`` port (a core with ``ext_bits``; default
        :data:`DEFAULT_MEMORY`; under cocotb, cocotbext-axi's ``AxiRam``, whose read latency
        is :data:`hwq.golden.memory.AXI_RAM_LATENCY`): with a fixed latency each layer's
        counter is asserted against :func:`hwq.golden.memory.schedule`, with stalls against
        its lower bound.
    """
    from hwq.layout.compiler import compile as compile_network
    from hwq.rtl.generate import cached_generate

    check_options(backend=backend, jobs=jobs, waves=waves)
    free_run_cycles = FREE_RUN_CYCLES if free_run_cycles is None else free_run_cycles
    if isinstance(free_run_cycles, bool) or not isinstance(free_run_cycles, int) \
            or free_run_cycles < 1:
        raise ValueError(f"Free-running cycles must be a positive integer, not "
                         f"{free_run_cycles!r}")
    free_run_cycles = free_run_cycles if free_run else 0
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
    memory = sim_memory(backend, memory)
    x = program.pack_input(inputs)  # validates shape and range before the slow steps
    n = x.shape[0]
    x = np.asarray(inputs, dtype=np.int64)
    if jobs is None:
        jobs = 1 if waves or backend != "compiled" else default_jobs(n, program.cycles())
    wave_kind = {True: "fst", False: None}.get(waves, waves) if waves else None

    verilog = cached_generate(config, cache_dir=cache_dir)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hwq-sim-") as tmp:
        job = Path(tmp)
        sources = _write_sources(verilog, job)
        run = _simulate_compiled if backend == "compiled" else _simulate_cocotb
        result = run(program, x, sources=sources, job=job, jobs=jobs, waves=wave_kind,
                     progress=progress, cache_dir=cache_dir, timeout_s=timeout_s, t0=t0,
                     free_run_cycles=free_run_cycles, memory=memory)
    result.verilog_lines = verilog.count("\n")
    return result


def sim_memory(backend: str, memory: MemoryTiming | None) -> MemoryTiming:
    """The memory on ``m_axi`` for ``backend``: ``memory``, or its default."""
    if memory is None:
        return MemoryTiming(latency=AXI_RAM_LATENCY) if backend == "cocotb" else DEFAULT_MEMORY
    if not isinstance(memory, MemoryTiming):
        raise TypeError(f"Memory must be a MemoryTiming, not {type(memory).__name__}")
    if backend == "cocotb" and memory.latency != AXI_RAM_LATENCY:
        raise ValueError(f"The cocotb backend's memory (cocotbext-axi AxiRam) has a "
                         f"latency of {AXI_RAM_LATENCY} cycles, not {memory.latency}: use the "
                         "compiled backend for other latencies")
    return memory


def memory_report(program: Program, sim: SimResult, memory: MemoryTiming) -> dict[str, Any]:
    """Where the weights and tensors live and what the external memory cost, for a report:
    on-chip and external bytes, bytes moved over ``m_axi`` and cycles lost waiting per
    inference."""
    external = bool(program.images["ext"].shape[0])
    cfg = program.config
    onchip = {name: depth * lay.width // 8
              for (name, lay), depth in zip(program.words.memories.items(),
                                            (cfg.depths[n] for n in program.words.memories),
                                            strict=True)}
    tensors = sorted(program.meta.get("act_external", {}))
    report: dict[str, Any] = {
        "weights": "external" if any("tile" in layer for layer in program.layers)
        else "onchip",
        "activations": tensors or "onchip",
        "onchip_bytes": onchip,
        "external_bytes": program.external_bytes,
    }
    if external:
        report.update(
            bytes_per_inference=float(sim.ext_beats.mean()) * cfg.ext_bits // 8,
            stall_cycles_per_inference=float(sim.stall_cycles.mean()),
            latency=memory.latency, stall=memory.stall,
            model="bound" if sim.model_is_bound else "exact")
    return report


def memory_lines(report: dict[str, Any]) -> list[str]:
    """Text lines of :func:`memory_report`."""
    kb = sum(report["onchip_bytes"].values()) / 1024
    acts = report.get("activations", "onchip")
    if report["weights"] == "onchip" and acts == "onchip":
        return [f"  every weight and tensor on chip ({kb:.1f} KiB of on-chip memories)"]
    where = []
    if report["weights"] != "onchip":
        where.append("weights")
    if acts != "onchip":
        where.append(f"tensors {', '.join(acts)}")
    return [f"  {' and '.join(where)} in external memory: "
            f"{report['external_bytes'] / 1024:.1f} KiB image, "
            f"{report['bytes_per_inference'] / 1024:.1f} KiB moved per inference, "
            f"{report['stall_cycles_per_inference']:.0f} cycles waiting per inference "
            f"(on-chip memories {kb:.1f} KiB; memory latency {report['latency']}, "
            f"stalls {report['stall']:g})"]


def check_options(*, backend: str, jobs: int | None, waves: bool | str) -> None:
    """Raise ``ValueError`` for a backend, jobs and waves that :func:`simulate` refuses."""
    if backend not in BACKENDS:
        raise ValueError(f"Backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"Jobs must be a positive integer, not {jobs!r}")
    if jobs is not None and jobs > 1 and backend != "compiled":
        raise ValueError(f"Jobs > 1 needs the compiled backend, not {backend!r} (jobs={jobs})")
    if jobs is not None and jobs > 1 and waves:
        raise ValueError(f"Waves record one process: use jobs=1, not jobs={jobs}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--jobs`` (``hwq sim``, ``hwq flow``)."""
    parser.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0],
                        help="compiled: the Verilated core with a C++ host (default); cocotb: "
                             "cocotb and cocotbext-axi on the same Verilog (slower)")
    parser.add_argument("--jobs", type=integer(1), default=None, metavar="N",
                        help="worker processes of the compiled backend, each simulating a "
                             "share of the images (default: the CPUs, fewer for short batches)")


def default_jobs(images: int, cycles_per_image: int) -> int:
    """Worker processes for a batch: the usable CPUs, at most one per image and one per
    :data:`CYCLES_PER_JOB` simulated cycles (a worker's start-up must pay for itself)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, images, images * cycles_per_image // CYCLES_PER_JOB))


def _write_sources(verilog: str, job: Path) -> list[Path]:
    """The core's Verilog, its lint waivers and the DSP models, written into ``job``."""
    from hwq.rtl.dsp import write_sim_models
    from hwq.rtl.generate import TOP
    from hwq.rtl.lint import waiver_file

    source = job / f"{TOP}.v"
    source.write_text(verilog)
    waivers = job / "hwq_waivers.vlt"  # the lint waivers of generated code (hwq.rtl.lint)
    waivers.write_text(waiver_file(source.name))
    models = write_sim_models(verilog, job)  # behavioural DSP blocks (dsp="ecp5")
    return [source, waivers, *models]


def _keep_waves(path: Path) -> str:
    keep = Path(tempfile.mkdtemp(prefix="hwq-waves-")) / path.name
    path.replace(keep)
    return str(keep)


def _simulate_compiled(program: Program, x: np.ndarray, *, sources: Sequence[Path], job: Path,
                       jobs: int, waves: str | None, progress: bool,
                       cache_dir: str | Path | None, timeout_s: float | None,
                       t0: float, free_run_cycles: int, memory: MemoryTiming) -> SimResult:
    from tqdm import tqdm

    from hwq.sim import compiled, harness

    build = compiled.build(sources, waves=waves, cache_dir=cache_dir,
                           ext_bits=program.config.ext_bits)
    build_seconds = time.perf_counter() - t0
    n = x.shape[0]
    trace = job / f"dump.{waves}" if waves else None
    with tqdm(total=n, desc="simulate", unit="img", disable=not progress, leave=False) as bar:
        if jobs == 1:
            run = harness.run_batch(build.library, program, x, waves=trace,
                                    free_run_cycles=free_run_cycles,
                                    progress=lambda i: bar.update(i + 1 - bar.n),
                                    memory=memory)
        else:
            run = harness.run_parallel(build.library, program, x, jobs,
                                       free_run_cycles=free_run_cycles,
                                       progress=lambda done: bar.update(done - bar.n),
                                       timeout_s=timeout_s, memory=memory)
    external = bool(program.images["ext"].shape[0])
    return SimResult(
        outputs=run.outputs,
        cycles=run.cycles,
        layer_cycles=run.layer_cycles,
        model_layer_cycles=model_layer_cycles(program, memory.fixed_latency),
        layer_names=[str(layer["name"]) for layer in program.layers],
        build_seconds=build_seconds,
        build_cached=build.cached,
        stall_cycles=run.stall_cycles,
        ext_beats=run.ext_beats,
        model_is_bound=external and memory.fixed_latency is None,
        load_seconds=run.load_seconds,
        infer_seconds=run.infer_seconds,
        infer_cycles=run.infer_cycles,
        free_run_cycles_per_s=(run.free_run_cycles / run.free_run_seconds
                               if run.free_run_cycles else None),
        verilog_lines=0,
        waves_file=_keep_waves(trace) if trace is not None else None,
        backend="compiled",
        jobs=max(1, len(run.workers)),
        extra={"load_cycles": run.load_cycles, "infer_cpu_seconds": run.infer_cpu_seconds,
               "workers": run.workers},
    )


def _simulate_cocotb(program: Program, x: np.ndarray, *, sources: Sequence[Path], job: Path,
                     jobs: int, waves: str | None, progress: bool,
                     cache_dir: str | Path | None, timeout_s: float | None,
                     t0: float, free_run_cycles: int, memory: MemoryTiming) -> SimResult:
    from hwq.rtl.generate import TOP
    from hwq.sim import build as sim_build

    n = x.shape[0]
    build = sim_build.build(list(sources), TOP, build_args=BUILD_ARGS,
                            waves=waves, cache_dir=cache_dir)
    build_seconds = time.perf_counter() - t0
    program.save(job / "program.hwqp")
    np.save(job / "inputs.npy", x)
    result_box: dict[str, Any] = {}

    def target() -> None:
        try:
            result_box["result"] = sim_build.run_tests(
                build, "hwq.sim.tb_core",
                extra_env={"HWQ_SIM_JOB": str(job), "HWQ_SIM_FREE_RUN": str(free_run_cycles),
                           "HWQ_SIM_MEMORY": json.dumps({"latency": memory.latency,
                                                         "stall": memory.stall,
                                                         "seed": memory.seed})},
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
        waves_file = _keep_waves(Path(run.waves_file))
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
                               if free_run_cycles else None),
        verilog_lines=0,
        waves_file=waves_file,
        backend="cocotb",
        jobs=1,
        extra={"load_cycles": int(r["load_cycles"])},
        stall_cycles=r["stall_cycles"],
        ext_beats=r["ext_beats"],
        model_is_bound=bool(r["model_is_bound"]),
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
