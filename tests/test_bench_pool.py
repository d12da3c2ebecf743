"""hwq.bench.pool: bench runs over worker processes."""

import os

import pytest

from hwq.bench.pool import check_jobs, run_tasks


def _power(shared, task):
    if task < 0:
        raise ArithmeticError(f"negative task {task}")
    return task ** shared, os.getpid()


def test_one_job_runs_in_order_in_this_process():
    out = list(run_tasks(_power, [3, 1, 2], 2, jobs=1))
    assert out == [(3, (9, os.getpid())), (1, (1, os.getpid())), (2, (4, os.getpid()))]


def test_workers_return_every_task_once():
    out = list(run_tasks(_power, list(range(6)), 3, jobs=2))
    assert sorted((task, value) for task, (value, _) in out) == [(t, t ** 3) for t in range(6)]
    pids = {pid for _, (_, pid) in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_a_failing_task_raises_in_the_caller():
    with pytest.raises(ArithmeticError, match="negative task -1"):
        list(run_tasks(_power, [1, -1, 2], 2, jobs=2))


@pytest.mark.parametrize("jobs", [0, -2, 2.0, True, None])
def test_bad_jobs(jobs):
    with pytest.raises(ValueError, match=r"Bench jobs must be an integer >= 1, not "):
        check_jobs(jobs)
    with pytest.raises(ValueError):
        list(run_tasks(_power, [1], 1, jobs=jobs))


def test_time_left_doctests():
    import doctest

    import hwq.bench

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    tests = [t for t in finder.find(hwq.bench.time_left) if t.examples]
    assert tests
    for t in tests:
        runner.run(t)
    assert runner.failures == 0 and runner.tries == 3
