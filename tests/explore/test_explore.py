"""hwq explore: points, Pareto marking, and a tiny sweep on a local Ray (cache and resume).

The sweep quantizes and compiles for real (uniform post-training on digits: seconds); its
place-and-route results are stored in the stage cache beforehand ("cached tool runs"), since
a real nextpnr run takes minutes per core.
"""

from __future__ import annotations

import json

import pytest

from hwq.explore.pareto import best, mark_pareto
from hwq.explore.space import Point, core_inputs, grid, read_toml
from hwq.explore.stages import StageCache, report_key

ray = pytest.importorskip("ray")  # the [explore] extra; CI installs it with [dev]


# --- points ----------------------------------------------------------------------------------


def test_the_grid_keeps_what_can_exist_and_says_why_the_rest_cannot():
    points, skipped = grid("digits", methods=["inq", "uniform", "mlq"], bits=[2, 4],
                           pe=["shift_add", "multiply"], lanes=[4, 8], simd=[8])
    got = {(p.method, p.bits, p.pe) for p in points}
    assert got == {("inq", 2, "shift_add"), ("inq", 4, "shift_add"), ("uniform", 2, "multiply"),
                   ("uniform", 4, "multiply"), ("mlq", 2, "multiply")}
    assert len(points) == 2 * len(got)          # lanes 4 and 8
    reasons = {(s["method"], s["bits"], s["pe"]): s["reason"] for s in skipped}
    assert reasons[("mlq", 4, "multiply")] == "Method 'mlq' takes --bits 2, not 4"
    assert reasons[("inq", 2, "multiply")] == ("inq gives POT weights; the multiply PE takes "
                                               "INT and CODEBOOK")
    assert len(reasons) == 2 * 2 * 3 - len(got)


def test_a_sample_is_seeded_and_a_subset():
    kwargs = dict(methods=["uniform"], bits=[2, 3, 4, 5], pe=["bit_serial", "multiply"],
                  lanes=[2, 4, 8], simd=[4, 8])
    full, _ = grid("digits", seed=3, **kwargs)
    a, _ = grid("digits", sample=5, seed=3, **kwargs)
    b, _ = grid("digits", sample=5, seed=3, **kwargs)
    assert a == b and len(a) == 5 and set(a) <= set(full)
    assert grid("digits", sample=500, seed=3, **kwargs)[0] == full


@pytest.mark.parametrize("kwargs, message", [
    (dict(methods=["nope"]), "Unknown quantization method 'nope'"),
    (dict(methods=["joint"]), "Method 'joint' needs a size budget"),
    (dict(lanes=[0]), "--lanes must be integers in 1..256, not 0"),
    (dict(pe=["fpu"]), "PE type must be one of shift_add, bit_serial, multiply, not 'fpu'"),
    (dict(methods=["inq"], pe=["bit_serial"]), "The sweep has no point: every combination was "
                                               "dropped (inq gives POT weights"),
])
def test_bad_sweeps_are_refused(kwargs, message):
    base = dict(methods=["uniform"], bits=[4], pe=["multiply"], lanes=[4], simd=[4])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        grid("digits", **{**base, **kwargs})


def test_the_weights_axis_doubles_the_points_and_keeps_on_chip_keys():
    kwargs = dict(methods=["uniform"], bits=[4], pe=["multiply"], lanes=[2, 4], simd=[4])
    onchip, _ = grid("digits", **kwargs)
    both, _ = grid("digits", weights=["external", "onchip"], **kwargs)
    assert [p.weights for p in onchip] == ["onchip"] * 2
    assert sorted(both) == sorted(onchip + [Point("digits", "uniform", 4, "multiply", la, 4,
                                                  0, "external") for la in (2, 4)])
    assert both[0].label == "uniform 4b / multiply 2x4"
    assert both[1].label == "uniform 4b / multiply 2x4 / external weights"
    # an on-chip point's compile inputs are those of sweeps before the axis existed (cache)
    assert core_inputs(onchip[0]) == {"pe": "multiply", "lanes": 2, "simd": 4}
    assert core_inputs(both[1], ext_bits=32, mem_latency=9) == {
        "pe": "multiply", "lanes": 2, "simd": 4, "weights": "external", "ext_bits": 32,
        "mem_latency": 9}
    with pytest.raises(ValueError, match="--weights must be among onchip, external, not 'auto'"):
        grid("digits", weights=["auto"], **kwargs)
    with pytest.raises(ValueError, match="--ext-bits must be one of 32, 64, 128, not 48"):
        core_inputs(both[1], ext_bits=48)
    with pytest.raises(ValueError, match="--mem-latency must be an integer in 1..1048576, not 0"):
        core_inputs(both[1], mem_latency=0)


def test_a_toml_sweep_names_its_unknown_keys(tmp_path):
    (tmp_path / "s.toml").write_text('model = "lenet5"\nmethods = "inq"\nbits = [2, 4]\n')
    assert read_toml(tmp_path / "s.toml") == {"model": "lenet5", "methods": ["inq"],
                                              "bits": [2, 4]}
    (tmp_path / "bad.toml").write_text('modle = "x"\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) modle; allowed: model, methods"):
        read_toml(tmp_path / "bad.toml")


# --- Pareto ----------------------------------------------------------------------------------


def _row(label, acc, ips, luts, error=None):
    return {"label": label, "accuracy": acc, "inferences_per_s": ips, "lut4_eq": luts,
            "cycles": 1, "weight_bits": 1, "error": error}


def test_the_pareto_front_is_the_undominated_rows():
    rows = [_row("a", 99.0, 1000, 5000), _row("b", 98.0, 2000, 5000),
            _row("c", 97.0, 900, 6000),          # worse than a in everything
            _row("d", 99.0, 1000, 4000),         # dominates a (fewer LUTs)
            _row("e", 99.5, 10, 90000), _row("f", 100.0, 1e6, 1, error="report failed")]
    objs = mark_pareto(rows)
    assert objs == (("accuracy", 1), ("inferences_per_s", 1), ("lut4_eq", -1))
    assert {r["label"]: r["pareto"] for r in rows} == {
        "a": False, "b": True, "c": False, "d": True, "e": True, "f": None}
    assert best(rows, budget_luts=5000, min_accuracy=98.5)["label"] == "d"
    assert best(rows, budget_luts=5000)["label"] == "b"
    assert best(rows, budget_luts=100) is None


# --- a sweep on Ray --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    import os

    cache = tmp_path_factory.mktemp("explore-cache")
    old = os.environ.get("HWQ_CACHE_DIR")
    os.environ["HWQ_CACHE_DIR"] = str(cache)   # the workers' digits model and builds too
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield cache
    ray.shutdown()
    if old is None:
        os.environ.pop("HWQ_CACHE_DIR")
    else:
        os.environ["HWQ_CACHE_DIR"] = old


FAKE_PNR = {"device": "LFE5U-25F", "fmax_mhz": 100.0,
            "resources": {"lut4": 1000, "ff": 500, "carry": 50, "dsp": 0, "bram": 4,
                          "lut4_eq": 1100}}


def test_a_sweep_runs_on_ray_then_comes_from_the_cache_and_resumes(local_ray, tmp_path):
    from hwq.explore.runner import run_sweep

    points, _ = grid("digits", methods=["uniform"], bits=[3, 4], pe=["multiply"],
                     lanes=[2, 4], simd=[4])
    root = str(local_ray / "stages")
    first = run_sweep(points, report=False, cache_root=root, progress=False)
    # one quantization per bit width serves both array sizes; one compile per point
    assert first["ray_tasks"] == 2 + 4
    rows = first["rows"]
    assert [r["error"] for r in rows] == [None] * 4
    assert all(r["cycles"] > 0 and 0 < r["utilization"] <= 1 for r in rows)
    by_bits = {}
    for r in rows:
        by_bits.setdefault(r["bits"], set()).add(r["accuracy"])
    assert all(len(v) == 1 for v in by_bits.values())   # same network on both cores

    # the place-and-route results, stored as a real run would store them
    cache = StageCache(root)
    for i, r in enumerate(rows):
        key = cache.key("report", report_key(r["core"], "ecp5", None))
        cache.put("report", key, {**FAKE_PNR, "fmax_mhz": 100.0 + i})
    second = run_sweep(points, report=True, cache_root=root, progress=False)
    assert second["ray_tasks"] == 0
    for i, r in enumerate(second["rows"]):
        assert r["cached"] is True and r["fmax_mhz"] == 100.0 + i
        assert r["inferences_per_s"] == pytest.approx((100.0 + i) * 1e6 / r["cycles"])

    # an interrupted sweep: one compile result lost, only it is recomputed
    lost = cache.key("compile", {"network": _quantize_key_of(cache, points[0]),
                                 "pe": "multiply", "lanes": points[0].lanes, "simd": 4})
    cache.path("compile", lost).unlink()
    third = run_sweep(points, report=True, cache_root=root, progress=False)
    assert third["ray_tasks"] == 1
    assert [r["cycles"] for r in third["rows"]] == [r["cycles"] for r in second["rows"]]


def _quantize_key_of(cache: StageCache, point: Point) -> str:
    from hwq.explore.stages import quantize_key

    return cache.key("quantize", quantize_key(point.model, point.method, point.bits,
                                              point.seed))


def test_a_failing_stage_is_a_row_with_its_error(local_ray, tmp_path):
    from hwq.explore.runner import run_sweep

    points = [Point("digits", "uniform", 4, "multiply", 2, 4)]
    root = str(tmp_path / "stages")   # its own cache: the error stays in this test
    cache = StageCache(root)
    key = _quantize_key_of(cache, points[0])
    run_sweep(points, report=False, cache_root=root, progress=False)
    result = cache.get("quantize", key)
    cache.put("quantize", key, {**result, "network_file": str(tmp_path / "gone.safetensors")})
    cache.path("compile", cache.key("compile", {"network": key, "pe": "multiply", "lanes": 2,
                                                "simd": 4})).unlink()
    row = run_sweep(points, report=False, cache_root=root, progress=False)["rows"][0]
    assert row["error"].startswith("compile: ")
    assert "gone.safetensors" in row["error"]
    assert row.get("cycles") is None and row["accuracy"] == result["accuracy"]


def test_an_external_weight_point_models_its_loads_and_matches_simulation(local_ray, tmp_path):
    from hwq.explore.runner import run_sweep

    kwargs = dict(methods=["uniform"], bits=[4], pe=["multiply"], lanes=[4], simd=[4])
    root = str(local_ray / "stages")
    (onchip,) = run_sweep(grid("digits", **kwargs)[0], report=False, cache_root=root,
                          progress=False)["rows"]
    points, _ = grid("digits", weights=["external"], **kwargs)
    (ext,) = run_sweep(points, report=False, cache_root=root, progress=False, sim_check=1,
                       sim_images=2, mem_latency=6)["rows"]
    assert ext["error"] is None and ext["weights"] == "external"
    assert ext["sim_check"] == {"images": 2, "mismatches": 0, "cycle_model_mismatches": []}
    assert ext["core"]["ext_bits"] == 64 and onchip["core"]["ext_bits"] == 0
    assert ext["core"]["weight_depth"] < onchip["core"]["weight_depth"] or \
        onchip["core"]["weight_depth"] <= 1024
    assert ext["accuracy"] == onchip["accuracy"] and ext["mem_latency"] == 6
    assert ext["external_bytes"] > 0
    # the loads cost cycles beyond the compute (the first load is never hidden)
    assert ext["cycles"] > ext["compute_cycles"] >= onchip["cycles"]


def test_explore_cli_writes_the_table(local_ray, tmp_path, capsys):
    from hwq.cli import main

    code = main(["explore", "--model", "digits", "--methods", "uniform", "--bits", "4",
                 "--pe", "multiply", "--lanes", "2", "4", "--simd", "4", "--no-report",
                 "--sim-check", "0", "--cache-dir", str(local_ray / "stages"), "-o",
                 str(tmp_path / "out"), "--json", "--no-progress", "--min-accuracy", "50"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["points"]) == 2 and data["failed"] == 0
    assert data["objectives"] == [["accuracy", 1], ["cycles", -1], ["weight_bits", -1]]
    assert data["best"]["lanes"] == 4          # fewer cycles, same network
    assert data["pareto"] == ["uniform 4b / multiply 4x4"]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["explore.csv", "explore.json", "explore.md"]
    table = (tmp_path / "out" / "explore.md").read_text()
    assert "| uniform | 4 | multiply | 4 | 4 | onchip |" in table


@pytest.mark.slow
def test_a_sweep_on_a_ray_cluster_gives_the_same_table(tmp_path):
    """`ray start --head` on loopback (DESIGN.md 9.6), then `hwq explore --address`: the same
    table as a local Ray. Both run as a user would, in processes with the cluster's variables
    (Ray reads them when it is imported)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
           "HWQ_CACHE_DIR": str(tmp_path / "cache")}
    sweep = ["--model", "digits", "--methods", "uniform", "--bits", "4", "--pe", "multiply",
             "--lanes", "2", "--simd", "4", "--no-report", "--sim-check", "0", "--json",
             "--no-progress", "--no-plots"]

    def explore(*extra: str) -> dict:
        proc = subprocess.run([str(bin_dir / "hwq"), "explore", *sweep, *extra], env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    subprocess.run([str(bin_dir / "ray"), "start", "--head", "--port", "6393", "--num-cpus",
                    "2", "--include-dashboard=false"], env=env, check=True,
                   capture_output=True, timeout=300)
    try:
        remote = explore("--address", "127.0.0.1:6393", "--cache-dir", str(tmp_path / "a"),
                         "-o", str(tmp_path / "ra"))
    finally:
        subprocess.run([str(bin_dir / "ray"), "stop"], env=env, capture_output=True,
                       timeout=300)
    local = explore("--cache-dir", str(tmp_path / "b"), "-o", str(tmp_path / "rb"))
    assert (remote["address"], remote["ray_tasks"]) == ("127.0.0.1:6393", 2)
    assert (local["address"], local["ray_tasks"]) == (None, 2)
    keep = ("label", "accuracy", "weight_bits", "cycles", "utilization", "core")
    assert [{k: r[k] for k in keep} for r in remote["points"]] == \
        [{k: r[k] for k in keep} for r in local["points"]]


@pytest.mark.parametrize("address, message", [
    ("nohost", "--address must be host:port of a Ray head (ray start --head), not 'nohost'"),
    ("127.0.0.1:9", "No Ray cluster answers at 127.0.0.1:9 (Connection refused); start one "
                    "with ray start --head --port PORT"),
])
def test_an_address_without_a_cluster_is_refused_at_once(address, message):
    from hwq.explore.runner import _check_reachable

    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        _check_reachable(address)


def test_a_stage_key_follows_the_source_of_the_modules_it_runs(tmp_path, monkeypatch):
    import sys

    from hwq.explore import stages

    pkg = tmp_path / "hwq_digest_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    files = stages._module_files("hwq_digest_probe")
    assert [label for label, _ in files] == ["hwq_digest_probe/__init__.py",
                                             "hwq_digest_probe/a.py"]
    before = stages.files_digest(files)
    (pkg / "a.py").write_text("X = 2\n")          # a code change changes the digest
    assert stages.files_digest(files) != before
    (pkg / "a.py").write_text("X = 1\n")
    assert stages.files_digest(files) == before    # and only the content counts
    sys.modules.pop("hwq_digest_probe", None)
    # every stage's modules exist; a stage key moves with its digest, not with others'
    assert set(stages.STAGE_SOURCES) == {"quantize", "compile", "report", "sim"}
    for stage in stages.STAGE_SOURCES:
        assert len(stages.source_digest(stage)) == 24
    with pytest.raises(ValueError, match="Unknown stage 'place'; allowed: quantize, compile"):
        stages.source_digest("place")
    inputs = {"model": "digits", "method": "uniform", "bits": 4, "seed": 0}
    key = stages.StageCache.key("quantize", inputs)
    monkeypatch.setattr(stages, "source_digest",
                        lambda s: "changed" if s == "quantize" else "same")
    assert stages.StageCache.key("quantize", inputs) != key
