"""``hwq bench quant`` (:mod:`hwq.bench.quant`) on a tiny configuration."""

from __future__ import annotations

import json

import pytest

from hwq.bench.quant import (
    bench_quant,
    epochs_per_step,
    format_quant,
    retrain_steps,
)
from hwq.quant.api import quantize


@pytest.fixture(scope="module")
def tiny(digits_reference, digits_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quant.json"
    result = bench_quant(bits=(4,), seeds=(0,), methods=("uniform",), peers=False,
                         progress=False, out=out, model=digits_reference, data=digits_data)
    return result, out


def test_structure_and_files(tiny):
    result, out = tiny
    assert result["bench"] == "quant" and result["complete"] is True
    assert result["settings"]["bits"] == [4] and result["settings"]["seeds"] == [0]
    assert result["settings"]["method_options"] == {}       # digits: the methods' defaults
    assert list(result["rows"]) == ["uniform"]
    assert result["rows"]["uniform"]["regime"] == "post-training"
    assert result["peer"]["available"] is False and "not requested" in result["peer"]["reason"]
    (run,) = result["runs"]
    assert (run["row"], run["bits"], run["seed"], run["retrain_epochs"]) == ("uniform", 4, 0, 0)
    for key in ("accuracy", "fake_quant_accuracy", "fake_quant_float_accuracy",
                "fp32_accuracy", "weight_bits_total", "compression_ratio", "timings", "seconds"):
        assert key in run
    cell = result["summary"]["uniform"]["4"]
    assert cell["n"] == 1 and cell["accuracy_std"] == 0.0
    assert cell["accuracy_min"] == cell["accuracy_mean"] == cell["accuracy_max"]
    assert result["targets"][0]["target"].startswith("integer accuracy")
    assert result["targets"][0]["met"]
    assert result["timings"]["total_s"] > 0
    # the files: the JSON on disk is the returned dict; the table and plot next to it
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert out.with_suffix(".md").read_text().strip() == format_quant(result)
    assert out.with_suffix(".png").stat().st_size > 0


def test_table_equals_quantize(tiny, digits_model, digits_data):
    result, _ = tiny
    ref = quantize(digits_model, "uniform", bits=4, data=digits_data, seed=0, progress=False)
    cell = result["summary"]["uniform"]["4"]
    assert cell["accuracy_mean"] == ref.accuracy
    assert result["runs"][0]["fake_quant_float_accuracy"] == ref.fake_quant_float_accuracy
    assert result["fp32_accuracy"] == ref.fp32_accuracy
    assert f"{ref.accuracy:.2f} ± 0.00 ({ref.accuracy:.2f}..{ref.accuracy:.2f})" in \
        format_quant(result)


def test_budgets():
    # INQ: three retraining steps (ten at 2 bits); SLQ 5 bits: four; MLQ: one per layer
    assert [retrain_steps("inq", b, 4) for b in (2, 3, 5)] == [9, 3, 3]
    assert retrain_steps("slq", 5, 4) == 4 and retrain_steps("mlq", 2, 4) == 4
    assert retrain_steps("uniform", 3, 4) == 0 and retrain_steps("uniform-qat", 3, 4) == 1
    assert [epochs_per_step(24, s) for s in (0, 1, 3, 4, 9)] == [0, 24, 8, 6, 3]
    assert epochs_per_step(3, 4) == 1


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="Unknown bench methods"):
        bench_quant(methods=("nope",), peers=False, progress=False)
    with pytest.raises(ValueError, match="bits"):
        bench_quant(bits=(1,), peers=False, progress=False)
    with pytest.raises(ValueError, match="budget"):
        bench_quant(epochs=0, peers=False, progress=False)


def test_peer_failure_is_skipped_with_a_note(digits_reference, digits_data, tmp_path,
                                             monkeypatch):
    from hwq.bench import peer
    from hwq.bench import quant as bq

    def broken(*args, **kwargs):
        raise RuntimeError("incompatible torch")

    monkeypatch.setattr(peer, "peer_status", lambda peers: {"available": True, "version": "x",
                                                            "evaluated_by": "", "setup": ""})
    monkeypatch.setattr(peer, "brevitas_runs", broken)
    result = bq.bench_quant(bits=(4,), seeds=(0,), methods=("uniform",), peers=True,
                            progress=False, out=tmp_path, plot=False, model=digits_reference,
                            data=digits_data)
    assert result["peer"]["available"] is False
    assert "incompatible torch" in result["peer"]["error"]
    assert list(result["rows"]) == ["uniform"] and {r["row"] for r in result["runs"]} == {"uniform"}
    assert "Brevitas rows skipped: RuntimeError: incompatible torch" in format_quant(result)
    assert (tmp_path / "quant.json").exists() and not (tmp_path / "quant.png").exists()


@pytest.mark.parametrize("build", ["resnet8", "sepnet"])
def test_the_brevitas_peer_takes_graph_models(build):
    """Residual and depthwise-separable nets: every conv, linear and clamp becomes Brevitas's."""
    pytest.importorskip("brevitas")  # the [peers] extra; CI installs it with [dev]
    import torch
    from torch import nn

    from hwq.bench import peer
    from hwq.quant.base import fold_batchnorm
    from hwq.workloads import models

    torch.manual_seed(0)
    folded = fold_batchnorm(getattr(models, build)(1).eval())
    net = peer.brevitas_model(folded, 4)
    replaced = {"Conv2d": "QuantConv2d", "Linear": "QuantLinear", "ReLU": "QuantReLU",
                "Hardtanh": "QuantHardTanh"}
    swapped = {name: type(net[1].get_submodule(name)).__name__
               for name, m in folded.named_modules() if type(m).__name__ in replaced}
    assert swapped and all(swapped[name] == replaced[type(folded.get_submodule(name)).__name__]
                           for name in swapped)
    convs = [m for m in folded.modules() if type(m) is nn.Conv2d]
    qconvs = [m for m in net.modules() if type(m).__name__ == "QuantConv2d"]
    assert [m.groups for m in qconvs] == [m.groups for m in convs]
    for q, m in zip(qconvs, convs, strict=True):
        assert torch.equal(q.weight, m.weight)   # the float weights, quantized on the fly
    assert net.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_resume_runs_only_the_missing_runs(digits_reference, digits_data, tmp_path,
                                           monkeypatch):
    import hwq.quant.api as api

    out = tmp_path / "quant.json"
    kwargs = dict(bits=(4,), seeds=(0, 1), methods=("uniform", "pot"), peers=False,
                  progress=False, out=out, model=digits_reference, data=digits_data, plot=False)
    full = bench_quant(**kwargs)
    assert len(full["runs"]) == 4
    # an interrupted bench: the file holds seed 0's two runs
    partial = json.loads(out.read_text())
    partial["runs"] = [r for r in partial["runs"] if r["seed"] == 0]
    partial["complete"] = False
    out.write_text(json.dumps(partial))
    calls = []
    real = api.quantize

    def counting(model, method, **kw):
        calls.append((method, kw["seed"]))
        return real(model, method, **kw)

    monkeypatch.setattr(api, "quantize", counting)
    resumed = bench_quant(resume=True, **kwargs)
    assert sorted(calls) == [("inq", 1), ("uniform", 1)]      # the pot row is inq's rounding
    assert resumed["resumed_runs"] == 2 and resumed["complete"] is True

    def key(r):
        return r["seed"], r["row"], r["accuracy"], r["weight_bits_total"]

    assert sorted(map(key, resumed["runs"])) == sorted(map(key, full["runs"]))
    for row, cells in full["summary"].items():
        for b, cell in cells.items():
            assert resumed["summary"][row][b]["accuracy_mean"] == cell["accuracy_mean"]
    # nothing missing: nothing runs; other settings are refused
    calls.clear()
    bench_quant(resume=True, **kwargs)
    assert calls == []
    with pytest.raises(ValueError, match="written with other settings"):
        bench_quant(resume=True, **{**kwargs, "seeds": (0, 2)})
    # a workload's method defaults (the retraining lr) are settings too: runs made with other
    # defaults are not kept
    from hwq.workloads import WORKLOADS
    monkeypatch.setitem(WORKLOADS["digits"].method_options, "inq", {"lr": 0.001})
    with pytest.raises(ValueError, match="written with other settings"):
        bench_quant(resume=True, **kwargs)
    monkeypatch.delitem(WORKLOADS["digits"].method_options, "inq")
    out.write_text('{"bench": "tq"}')
    with pytest.raises(ValueError, match="not a quant bench result"):
        bench_quant(resume=True, **kwargs)
    # without resume the file is overwritten, and resume from no file runs everything
    (tmp_path / "none").mkdir()
    fresh = bench_quant(resume=True, **{**kwargs, "out": tmp_path / "none" / "q.json"})
    assert "resumed_runs" not in fresh and len(fresh["runs"]) == 4


def test_jobs_give_the_same_runs_in_plan_order(digits_reference, digits_data, tmp_path, capsys):
    """Runs in two worker processes equal the in-process runs, and the file lists them in
    plan order whatever order they finished in."""
    kwargs = dict(bits=(3, 4), seeds=(0, 1), methods=("uniform", "slq-ptq"), peers=False,
                  model=digits_reference, data=digits_data, plot=False)
    one = bench_quant(out=tmp_path / "one.json", progress=False, **kwargs)
    two = bench_quant(out=tmp_path / "two.json", progress=True, jobs=2, **kwargs)

    def same(r):
        return {k: v for k, v in r.items() if k not in ("timings", "seconds")}

    assert [same(r) for r in two["runs"]] == [same(r) for r in one["runs"]]
    assert [(r["seed"], r["bits"], r["row"]) for r in two["runs"]] == [
        (s, b, row) for s in (0, 1) for b in (3, 4) for row in ("uniform", "slq-ptq")]
    err = capsys.readouterr().err
    assert "8 runs over 2 worker processes" in err
    assert sorted(line.split("]")[0] for line in err.splitlines() if line.startswith("[")) == [
        f"[{i}/8" for i in range(1, 9)]


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True, "2"])
def test_bad_jobs_are_refused_before_any_work(jobs, monkeypatch):
    from hwq.workloads import Workload

    monkeypatch.setattr(Workload, "pretrained", None)      # never reached
    with pytest.raises(ValueError, match=f"Bench jobs must be an integer >= 1, not {jobs!r}"):
        bench_quant(jobs=jobs, out=None, progress=False)


def test_cli_jobs(monkeypatch, tmp_path, capsys):
    from hwq.bench import quant as bq
    from hwq.cli import main

    seen = {}

    def record(**kw):
        seen.update(kw)
        raise ValueError("stop here")

    monkeypatch.setattr(bq, "bench_quant", record)
    assert main(["bench", "quant", "--jobs", "3", "-o", str(tmp_path / "q.json")]) == 2
    assert seen["jobs"] == 3
    assert main(["bench", "quant", "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
