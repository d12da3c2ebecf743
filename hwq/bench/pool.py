"""Independent bench runs over worker processes (``--jobs``), results as they finish.

A long accuracy table (``hwq bench quant``, ``hwq bench tq``) is a list of runs that share
nothing but the model and the data: each is deterministic given its seed, and each uses one
torch thread. :func:`run_tasks` hands them to ``jobs`` worker processes (``spawn``: no state
is inherited; the shared objects are sent once per worker, not once per run) and yields each
result as it finishes, so the caller can log it and save its file after every run. With
``jobs=1`` the tasks run in this process, in order, exactly as before.

Processes, not threads: every run keeps one torch thread, as it does with ``jobs=1``, so its
result does not depend on how many runs go on beside it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

__all__ = ["check_jobs", "run_tasks"]

_SHARED: Any = None


def check_jobs(jobs: object) -> int:
    """``jobs`` as a positive int, or ``ValueError`` naming it."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"Bench jobs must be an integer >= 1, not {jobs!r}")
    return jobs


def _init(shared: Any) -> None:
    import torch

    global _SHARED
    _SHARED = shared
    torch.set_num_threads(1)


def _call(fn: Callable[[Any, Any], Any], task: Any) -> Any:
    return fn(_SHARED, task)


def run_tasks(fn: Callable[[Any, Any], Any], tasks: Sequence[Any], shared: Any,
              jobs: int = 1) -> Iterator[tuple[Any, Any]]:
    """``(task, fn(shared, task))`` for every task, in completion order.

    ``fn`` must be a module-level function (workers import it by name); ``shared`` and the
    tasks must pickle. An exception in ``fn`` propagates to the caller at that task's turn
    (the pool is shut down, pending tasks cancelled); a caller that wants to go on after a
    failure catches it inside ``fn`` and returns it.
    """
    jobs = check_jobs(jobs)
    if jobs == 1 or len(tasks) <= 1:
        for task in tasks:
            yield task, fn(shared, task)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx,
                             initializer=_init, initargs=(shared,)) as pool:
        pending = {pool.submit(_call, fn, task): task for task in tasks}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    yield task, future.result()
        finally:
            for future in pending:
                future.cancel()
