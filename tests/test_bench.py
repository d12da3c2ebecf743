"""hwq bench plumbing (the benchmarks themselves are not tests)."""

import json

import pytest

from hwq.bench import all as bench
from hwq.bench import golden
from hwq.cli import main


def test_bench_all_collects_sections_and_writes_a_summary(tmp_path, monkeypatch):
    calls = []

    def fake(name):
        def run(*, full, out_dir, **_):
            calls.append((name, full, out_dir))
            if name == "tq":
                raise RuntimeError("tool missing")
            return {"bench": name, "figure": 1.5}, f"{name} table"
        return run

    monkeypatch.setattr(bench, "SECTIONS", {n: fake(n) for n in bench.SECTIONS})
    result = bench.bench_all(skip=["hw"], out_dir=tmp_path)
    assert [c[0] for c in calls] == ["golden", "sim", "quant", "tq", "joint", "util"]
    assert all(c[1] is False and c[2] == tmp_path for c in calls)
    sections = result["sections"]
    assert sections["golden"]["figure"] == 1.5
    assert sections["tq"]["error"] == "RuntimeError: tool missing"
    assert "hw" not in sections
    summary = (tmp_path / "summary.md").read_text()
    assert "## golden" in summary and "golden table" in summary
    assert "FAILED: tool missing" in summary


def test_bench_all_rejects_unknown_sections():
    with pytest.raises(ValueError, match=r"Unknown benchmark\(s\) \['fpga'\]"):
        bench.bench_all(skip=["fpga"])


def test_bench_golden_cli_json(tmp_path, capsys):
    out = tmp_path / "g.json"
    code = main(["bench", "golden", "--repeats", "2", "--batch", "1", "--channels", "8",
                 "--size", "8", "--json", "-o", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["bench"] == "golden" and printed["repeats"] == 2
    assert printed["ratio_golden_vs_torch"] > 0
    assert set(printed["median_s"]) == {"golden_conv", "golden_conv_requant", "torch_float32_conv"}


def test_bench_rejects_bad_sizes(capsys):
    assert main(["bench", "golden", "--repeats", "0", "-o", "/tmp/unused.json"]) == 2
    assert capsys.readouterr().err == ("hwq bench golden: error: argument --repeats: must be an "
                                       "integer >= 1, not '0' (see hwq bench golden --help)\n")
    with pytest.raises(ValueError, match="Benchmark repeats must be a positive integer, not 0"):
        golden.bench_golden(repeats=0)


def test_every_section_runner_resolves_its_functions():
    """The runners import their benchmark functions lazily: check the names exist."""
    import importlib

    for module, names in {"hwq.bench.quant": ("bench_quant", "format_quant"),
                          "hwq.bench.tq": ("bench_tq", "format_tq"),
                          "hwq.bench.joint": ("bench_joint", "format_joint"),
                          "hwq.bench.hw": ("bench_hw", "format_table"),
                          "hwq.bench.util": ("bench_util", "format_util")}.items():
        mod = importlib.import_module(module)
        for name in names:
            assert callable(getattr(mod, name)), f"{module}.{name}"


def test_bench_all_hands_the_hw_options_to_the_hw_section_only(tmp_path, monkeypatch):
    seen = {}

    def fake(name):
        def run(*, full, out_dir, **extra):
            seen[name] = extra
            return {"bench": name}, name
        return run

    monkeypatch.setattr(bench, "SECTIONS", {n: fake(n) for n in bench.SECTIONS})
    bench.bench_all(skip=["quant", "tq", "joint"], out_dir=tmp_path, hw_timeout=90.0)
    assert seen == {"golden": {}, "sim": {}, "hw": {"timeout": 90.0, "cores": False},
                    "util": {}}
    bench.bench_all(skip=["golden", "sim", "quant", "tq", "joint"], out_dir=tmp_path,
                    hw_cores=True)
    assert seen["hw"] == {"timeout": None, "cores": True}
    bench.bench_all(skip=["golden", "sim", "quant", "tq", "joint"], out_dir=tmp_path,
                    full=True)
    assert seen["hw"] == {"timeout": None, "cores": True}


def test_bench_joint_takes_a_workload_and_its_joint_options(monkeypatch):
    from hwq import workloads
    from hwq.bench.joint import bench_joint, format_joint

    # a workload of the digits data and model whose joint defaults are short runs
    spec = workloads.Workload("digits-short", "hwq.workloads.digits", None, (1, 8, 8), 540,
                              {"joint": {"epochs": 2, "finetune_epochs": 1}})
    monkeypatch.setitem(workloads.WORKLOADS, "digits-short", spec)
    r = bench_joint(workload="digits-short", compressions=(20,), seeds=(0,), layout=False,
                    out_dir=None, anneal_epochs=0)
    assert r["workload"] == "digits-short"
    (run,) = r["runs"]
    assert (run["options"]["epochs"], run["options"]["finetune_epochs"]) == (2, 1)
    assert run["options"]["anneal_epochs"] == 0            # the caller's options win
    assert run["total_bits"] <= run["budget_bits"] and run["output_mismatches"] == 0
    assert format_joint(r).startswith("joint on digits-short (fp32 ")
