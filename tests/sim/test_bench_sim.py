"""``hwq bench sim``: which runs it makes and how its ratios are taken (simulators faked).

The engines themselves are checked against each other in test_core_sim.py; here every
simulate() call answers with set speeds, so the table's figures are known exactly.
"""

from __future__ import annotations

import importlib
import re
from types import SimpleNamespace

import numpy as np
import pytest

from hwq.bench import sim as bench_sim
from hwq.layout.executor import execute

#: cycles/s each (backend, jobs) reports: end to end, free-running.
SPEEDS = {("compiled", 1): (900e3, 1000e3), ("compiled", 2): (1800e3, 990e3),
          ("cocotb", 1): (300e3, 400e3)}


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def simulate(program, config, x, *, backend, jobs, progress, free_run, free_run_cycles):
        assert free_run is True
        seen.append((backend, jobs, len(x), free_run_cycles))
        e2e, free = SPEEDS[backend, jobs]
        return SimpleNamespace(outputs=execute(program, x), sim_cycles_per_s=e2e,
                               free_run_cycles_per_s=free, build_seconds=0.0,
                               infer_seconds=2.0, extra={"infer_cpu_seconds": 1.5 * jobs},
                               cycle_model_mismatches=lambda: [])

    def simulate_core(program, x, *, load):
        return SimpleNamespace(outputs=execute(program, x), cycles=[5000] * len(x),
                               run_seconds=50.0 * len(x))

    # the module, not hwq.sim.simulate (the package's re-export of the function)
    monkeypatch.setattr(importlib.import_module("hwq.sim.simulate"), "simulate", simulate)
    monkeypatch.setattr("hwq.rtl.simulation.simulate_core", simulate_core)
    return seen


def test_runs_ratios_and_table(calls):
    r = bench_sim.bench_sim(images=6, large_images=0, jobs=2, repeats=2, progress=False)
    digits = r["workloads"]["digits"]
    cocotb_images = min(6, bench_sim.COCOTB_CYCLES // digits["cycles_per_image"])
    assert calls == [("compiled", 2, 2, 10_000),
                     ("compiled", 1, 6, bench_sim.FREE_RUN_CYCLES), ("compiled", 2, 6, 10_000),
                     ("compiled", 1, 6, bench_sim.FREE_RUN_CYCLES), ("compiled", 2, 6, 10_000),
                     ("cocotb", 1, cocotb_images, 200_000)]
    assert digits["ratios"] == pytest.approx({
        "compiled_vs_free_run": 0.9, "compiled_jobs2_vs_free_run": 1.8,
        "compiled_vs_cocotb_end_to_end": 3.0, "cocotb_vs_free_run": 0.3,
        "compiled_vs_amaranth": 900e3 / 100})
    assert [(row["engine"], row["mode"], row["jobs"]) for row in digits["rows"]] == [
        ("compiled", "end to end", 1), ("compiled", "free-running", 1),
        ("compiled", "end to end", 2), ("cocotb", "end to end", 1),
        ("cocotb", "free-running", 1), ("amaranth", "core cycles", 1)]
    text = bench_sim.format_sim(r)
    assert [row["cores"] for row in digits["rows"]] == [0.75, None, 1.5, None, None, None]
    assert "\n  compiled  end to end        2       6       1.800 M       1.800x" in text
    assert re.search(r"\n  compiled  end to end        1       6       0.900 M       0.900x +"
                     r"-?\d+\.\d   0.75\n", text)
    assert "\n  amaranth  core cycles       1       1           100       0.000x     50.0\n" in text


def test_the_large_network_needs_over_150k_cycles(calls):
    """A long program per image (about 24x the digits CNN's), so speed is measured on long runs."""
    r = bench_sim.bench_sim(images=0, large_images=2, jobs=2, repeats=1, progress=False)
    large = r["workloads"]["vgg_small"]
    assert large["cycles_per_image"] >= 150_000
    assert large["core"]["pe"] == "shift_add" and "digits" not in r["workloads"]
    assert ("cocotb", 1, 2, 200_000) in calls  # 2 M cycles hold fewer than 10 images
    assert [row["engine"] for row in large["rows"]].count("amaranth") == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"jobs": 1}, "Benchmark jobs must be an integer >= 2, not 1"),
    ({"images": 541}, "Benchmark images must be at most 540 (the digits test set), not 541"),
    ({"images": 0, "large_images": 0}, "nothing to run"),
    ({"repeats": 0}, "Benchmark repeats must be an integer >= 1, not 0"),
])
def test_bad_sizes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bench_sim.bench_sim(**kwargs)


def test_digits_inputs_span_the_activation_range():
    r = bench_sim._workloads("shift_add", 8, 8, 540, 0)[0]
    assert r["x"].shape == (540, 1, 8, 8)
    assert (int(r["x"].min()), int(r["x"].max())) == (0, 127)
    assert np.unique(r["x"]).size > 16
