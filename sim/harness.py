"""Run a Program over a batch of inputs on the compiled backend, in one process or several.

:func:`run_batch` runs in this process: one :class:`~hwq.sim.compiled.CompiledModel`, the
host runtime loads the program and runs every input, then the same model runs a stretch of
free-running clock (no transactions) for the speed reference. :func:`run_parallel` spreads
the inputs over ``jobs`` worker processes (``python -m hwq.sim.harness``), one contiguous
range of images and one model each, and joins their results in input order; a worker that
dies (a crash, a signal, an error) stops the batch with :class:`WorkerFailed` naming its
image range, never a partial result.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from hwq.errors import CheckFailed
from hwq.golden.memory import MemoryTiming
from hwq.host.runtime import Runtime
from hwq.layout.program import Program

__all__ = ["FREE_RUN_CYCLES", "BatchRun", "WorkerFailed", "run_batch", "run_parallel"]

#: Cycles of the free-running reference after a batch.
FREE_RUN_CYCLES = 200_000


class WorkerFailed(CheckFailed):
    """A worker process of a parallel batch died or failed; its images have no results."""


@dataclass
class BatchRun:
    """What one batch did: outputs, counters and where the time went.

    Times are wall seconds; ``infer_start``/``infer_end`` are :func:`time.perf_counter`
    readings (one system-wide clock on Linux, so comparable across worker processes).
    """

    outputs: np.ndarray             # (N, *output shape)
    cycles: np.ndarray              # (N,) CYCLES register per inference
    layer_cycles: np.ndarray        # (N, layers) LAYER_CYCLES per inference
    load_seconds: float
    load_cycles: int                # simulated cycles of loading the program
    infer_start: float
    infer_end: float
    infer_cycles: int               # simulated cycles of the inference phase (bus + compute)
    infer_cpu_seconds: float        # CPU time of the inference phase (all processes)
    free_run_cycles: int
    free_run_seconds: float
    stall_cycles: np.ndarray | None = None  # (N,) STALL_CYCLES per inference
    ext_beats: np.ndarray | None = None     # (N,) EXT_BEATS per inference
    workers: list[dict] = field(default_factory=list)

    @property
    def infer_seconds(self) -> float:
        return self.infer_end - self.infer_start


def run_batch(library: str | os.PathLike, program: Program, x: np.ndarray, *,
              waves: str | os.PathLike | None = None,
              free_run_cycles: int = FREE_RUN_CYCLES,
              progress: Callable[[int], None] | None = None,
              memory: MemoryTiming | None = None) -> BatchRun:
    """Load ``program`` and run inputs ``x`` on one model of ``library`` in this process.

    The free-running reference runs half before the inputs and half after them, so that
    a change of the machine's load during the batch weighs on both figures alike.
    ``progress(i)`` is called after input ``i``; ``waves`` records a trace there;
    ``memory``: the timing of the memory model on ``m_axi`` (a core with ``ext_bits``).
    """
    from hwq.sim.compiled import CompiledDevice, CompiledModel

    model = CompiledModel(library, waves=waves)
    first = free_run_cycles // 2
    try:
        runtime = Runtime(CompiledDevice(model, memory=memory))
        t0, c0 = time.perf_counter(), model.cycle
        asyncio.run(runtime.load(program))
        t1, c1 = time.perf_counter(), model.cycle
        model.run(first)
        t2, c2, cpu = time.perf_counter(), model.cycle, time.process_time()
        result = asyncio.run(runtime.infer(x, progress=progress))
        t3, c3, cpu = time.perf_counter(), model.cycle, time.process_time() - cpu
        model.run(free_run_cycles - first)
        t4 = time.perf_counter()
    finally:
        model.close()
    return BatchRun(outputs=result.outputs, cycles=result.cycles,
                    layer_cycles=result.layer_cycles, load_seconds=t1 - t0,
                    load_cycles=c1 - c0, infer_start=t2, infer_end=t3, infer_cycles=c3 - c2,
                    infer_cpu_seconds=cpu, free_run_cycles=free_run_cycles,
                    free_run_seconds=t2 - t1 + t4 - t3, stall_cycles=result.stall_cycles,
                    ext_beats=result.ext_beats)


def split(n: int, jobs: int) -> list[tuple[int, int]]:
    """``jobs`` contiguous ranges ``[lo, hi)`` covering ``0..n``, sizes differing by <= 1."""
    bounds = np.linspace(0, n, jobs + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def run_parallel(library: str | os.PathLike, program: Program, x: np.ndarray, jobs: int, *,
                 free_run_cycles: int = FREE_RUN_CYCLES,
                 progress: Callable[[int], None] | None = None,
                 timeout_s: float | None = None, poll_s: float = 0.05,
                 memory: MemoryTiming | None = None) -> BatchRun:
    """Run inputs ``x`` over ``jobs`` worker processes; results in input order.

    ``progress(done)`` is called with the number of inputs finished so far; workers still
    running after ``timeout_s`` wall seconds are stopped.

    Raises
    ------
    WorkerFailed
        a worker exited with an error or a signal, wrote no result, or ran out of time
        (the message names the worker, its image range and the last line of its log).
    """
    ranges = split(x.shape[0], jobs)
    deadline = time.perf_counter() + timeout_s if timeout_s is not None else None
    with tempfile.TemporaryDirectory(prefix="hwq-jobs-") as tmp:
        job = Path(tmp)
        program.save(job / "program.hwqp")
        np.save(job / "inputs.npy", np.ascontiguousarray(x))
        timing = memory or MemoryTiming()
        (job / "job.json").write_text(json.dumps({
            "library": str(Path(library).resolve()), "free_run_cycles": free_run_cycles,
            "memory": {"latency": timing.latency, "stall": timing.stall,
                       "seed": timing.seed}}))
        procs = []
        try:
            for k, (lo, hi) in enumerate(ranges):
                with (job / f"worker-{k}.log").open("w") as log:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "hwq.sim.harness", str(job), str(k), str(lo),
                         str(hi)], stdout=subprocess.DEVNULL, stderr=log))
            done = 0
            while any(p.poll() is None for p in procs):
                for k, p in enumerate(procs):
                    if p.poll() not in (None, 0):
                        raise _failure(job, k, ranges, p.returncode)
                if deadline is not None and time.perf_counter() > deadline:
                    k = next(k for k, p in enumerate(procs) if p.poll() is None)
                    lo, hi = ranges[k]
                    raise WorkerFailed(f"Simulation worker {k + 1} of {len(ranges)} (images "
                                       f"{lo}..{hi - 1}) did not finish within {timeout_s:g} s; "
                                       "no results for the batch")
                if progress is not None:
                    now = sum(_progress(job, k) for k in range(len(procs)))
                    if now > done:  # a file caught mid-write reads as 0
                        done = now
                        progress(done)
                time.sleep(poll_s)
            runs = []
            for k, p in enumerate(procs):
                if p.returncode != 0:
                    raise _failure(job, k, ranges, p.returncode)
                runs.append(_load_run(job, k, ranges))
        finally:
            for p in procs:  # only on an error: stop the others, then reap them all
                if p.poll() is None:
                    p.kill()
                p.wait()
    if progress is not None:
        progress(x.shape[0])
    return _join(runs, ranges)


def _progress(job: Path, k: int) -> int:
    try:
        return int((job / f"progress-{k}").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _failure(job: Path, k: int, ranges: list[tuple[int, int]], code: int) -> WorkerFailed:
    lo, hi = ranges[k]
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    elif code == 0:
        how = "exited without writing its result"
    else:
        how = f"exited with code {code}"
    error = job / f"error-{k}"  # the worker's exception, else its log's last line
    lines = (error if error.is_file() else job / f"worker-{k}.log").read_text(
        errors="replace").strip().splitlines()
    last = f": {lines[-1]}" if lines else ""
    return WorkerFailed(f"Simulation worker {k + 1} of {len(ranges)} (images {lo}..{hi - 1}) "
                        f"{how}; no results for the batch{last}")


def _load_run(job: Path, k: int, ranges: list[tuple[int, int]]) -> BatchRun:
    path = job / f"result-{k}.npz"
    if not path.is_file():
        raise _failure(job, k, ranges, 0)
    with np.load(path) as r:
        values = {f.name: r[f.name] for f in fields(BatchRun) if f.name != "workers"}
    scalars = {k: v.item() for k, v in values.items() if v.ndim == 0}
    return BatchRun(**{**values, **scalars})


def _join(runs: list[BatchRun], ranges: list[tuple[int, int]]) -> BatchRun:
    """One :class:`BatchRun` of workers' runs: arrays in input order, the inference phase
    from the first worker's start to the last one's end, free-running as the mean rate."""
    free_cycles = sum(r.free_run_cycles for r in runs)
    rate = float(np.mean([r.free_run_cycles / r.free_run_seconds for r in runs])
                 if free_cycles else np.inf)
    return BatchRun(
        outputs=np.concatenate([r.outputs for r in runs]),
        cycles=np.concatenate([r.cycles for r in runs]),
        layer_cycles=np.concatenate([r.layer_cycles for r in runs]),
        stall_cycles=np.concatenate([r.stall_cycles for r in runs]),
        ext_beats=np.concatenate([r.ext_beats for r in runs]),
        load_seconds=max(r.load_seconds for r in runs),
        load_cycles=max(r.load_cycles for r in runs),
        infer_start=min(r.infer_start for r in runs),
        infer_end=max(r.infer_end for r in runs),
        infer_cycles=sum(r.infer_cycles for r in runs),
        infer_cpu_seconds=sum(r.infer_cpu_seconds for r in runs),
        free_run_cycles=free_cycles, free_run_seconds=free_cycles / rate,
        workers=[{"images": [lo, hi], "load_seconds": r.load_seconds,
                  "infer_seconds": r.infer_seconds, "infer_cycles": r.infer_cycles,
                  "infer_cpu_seconds": r.infer_cpu_seconds,
                  "free_run_cycles_per_s": (r.free_run_cycles / r.free_run_seconds
                                            if r.free_run_cycles else None)}
                 for r, (lo, hi) in zip(runs, ranges, strict=True)],
    )


def _worker(job: Path, k: int, lo: int, hi: int) -> None:
    """Worker ``k``: images ``lo..hi-1`` of the job folder's inputs -> ``result-k.npz``."""
    spec = json.loads((job / "job.json").read_text())
    program = Program.load(job / "program.hwqp")
    x = np.load(job / "inputs.npy", mmap_mode="r")[lo:hi]
    progress_file = job / f"progress-{k}"

    def progress(i: int) -> None:
        if i % 16 == 15 or i == hi - lo - 1:
            progress_file.write_text(str(i + 1))

    run = run_batch(spec["library"], program, np.asarray(x), progress=progress,
                    free_run_cycles=int(spec["free_run_cycles"]),
                    memory=MemoryTiming(**spec["memory"]))
    with tempfile.NamedTemporaryFile(dir=job, suffix=".npz", delete=False) as f:
        np.savez(f, **{f_.name: getattr(run, f_.name) for f_ in fields(BatchRun)
                       if f_.name != "workers"})
    os.replace(f.name, job / f"result-{k}.npz")


if __name__ == "__main__":
    job_dir, index = Path(sys.argv[1]), int(sys.argv[2])
    try:
        _worker(job_dir, index, int(sys.argv[3]), int(sys.argv[4]))
    except BaseException as exc:
        (job_dir / f"error-{index}").write_text(f"{type(exc).__name__}: {exc}".replace("\n", " "))
        raise
