"""``hwq bench tq`` (:mod:`hwq.bench.tq`): seeds vs model seeds, options, the CLI.

TQ itself is replaced by a recorder (``tests/quant/test_tq.py`` tests it); these tests check
which fp32 model and seed every run gets and what the result records. Models of seeds other
than the reference are "trained" by a stub that trains nothing, into a private cache.
"""

from __future__ import annotations

import json
import shutil
import statistics
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hwq.bench import tq as bt
from hwq.cli import main
from hwq.workloads import digits
from hwq.workloads.train import evaluate

from .stubs import StubFit

#: The keys written before model seeds existed: the default mode keeps exactly these.
RESULT_KEYS = {"benchmark", "workload", "complete", "fp32_accuracy", "settings",
               "coding_gain_db", "summary", "runs", "timings"}
SETTINGS_KEYS = {"bits", "transforms", "retrain_epochs", "seeds", "calib_size", "act_bits",
                 "test_images",
                 "average_bits", "baseline_options"}
TQ_RUN_KEYS = {"method", "transform", "target_bits", "average_bits", "retrain_epochs", "seed",
               "accuracy", "test_nll", "flips", "weight_bits_total", "mismatches",
               "weight_only_accuracy", "pruned_channels", "seconds"}
SUMMARY_KEYS = {"method", "transform", "target_bits", "retrain_epochs", "seeds",
                "accuracy_mean", "accuracy_std", "accuracy_min", "accuracy_max",
                "test_nll_mean", "flips_mean", "average_bits_mean", "mismatches"}


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class _FakeTQ:
    """Stands in for analyze_tq, quantize_tq and _network_metrics; records every call.

    The n-th network gets ``accuracy = ACCURACY[n]``, ``flips = FLIPS[n]``.
    """

    ACCURACY = (98.0, 50.0, 60.0, 96.0, 52.0, 63.0)
    FLIPS = (2, 40, 30, 6, 41, 33)

    def __init__(self):
        self.analyses: list[tuple[nn.Module, str, int]] = []
        self.metrics_calls: list[tuple[nn.Module, object]] = []

    def analyze(self, model, data, *, transform, seed, calib_size):
        self.analyses.append((model, transform, seed))
        return SimpleNamespace(gains={"3": {transform: 1.5 + seed}}, model=model, seed=seed)

    def quantize(self, model, data, *, bits, transform, seed, retrain_epochs, analysis,
                 calib_size, progress):
        assert analysis.model is model and analysis.seed == seed
        return SimpleNamespace(model=model, qweights={}, info={
            "average_bits": bits - 0.25, "layers": {"3": {"pruned_channels": 1}}})

    def metrics(self, model, qweights, data, fp32_pred):
        n = len(self.metrics_calls)
        self.metrics_calls.append((model, fp32_pred))
        return {"accuracy": self.ACCURACY[n], "test_nll": 0.5, "flips": self.FLIPS[n],
                "weight_bits_total": 30496, "mismatches": 0}


@pytest.fixture
def fake(digits_reference, digits_cache_dir, tmp_path, monkeypatch):
    """A private cache holding the reference model, a stub trainer and a fake TQ."""
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copyfile(digits_cache_dir / digits.CACHE_FILE, cache / digits.CACHE_FILE)
    monkeypatch.setenv(digits.CACHE_ENV, str(cache))
    stub = StubFit()
    monkeypatch.setattr(digits, "fit", stub)
    tq = _FakeTQ()
    monkeypatch.setattr(bt, "analyze_tq", tq.analyze)
    monkeypatch.setattr(bt, "quantize_tq", tq.quantize)
    monkeypatch.setattr(bt, "_network_metrics", tq.metrics)
    return SimpleNamespace(cache=cache, fit=stub, tq=tq)


def _predictions(model: nn.Module, data: digits.DigitsData):
    with torch.no_grad():
        return model.eval()(data.x_test).argmax(dim=1).numpy()


TINY = dict(bits=(2.0,), transforms=("elt",), retrain_epochs=(0,), plot=False)


def test_model_seeds_quantize_one_model_per_seed(fake, digits_reference, digits_data,
                                                 tmp_path):
    with pytest.warns(RuntimeWarning, match="^Digits model of seed 1 reached "):
        result = bt.bench_tq(model_seeds=[0, 1], out_dir=tmp_path, **TINY)
    # seed 0 loaded the reference from the cache; seed 1 was trained with seed 1, and cached
    (call,) = fake.fit.calls
    assert call["seed"] == 1
    assert sorted(p.name for p in fake.cache.iterdir()) == [
        "digits-seed1.safetensors", digits.CACHE_FILE]
    (m0, t0, s0), (m1, t1, s1) = fake.tq.analyses
    assert (t0, s0, t1, s1) == ("elt", 0, "elt", 1)
    assert _states_equal(m0, digits_reference)
    assert _states_equal(m1, digits.build_model(seed=1))  # the stub trains nothing
    assert not _states_equal(m0, m1)
    # the baselines quantize the same models; flips count against each model's own fp32
    metric_models = [m for m, _ in fake.tq.metrics_calls]
    assert metric_models[0] is m0 and metric_models[3] is m1
    for i, m in enumerate((m0, m0, m0, m1, m1, m1)):
        pred = fake.tq.metrics_calls[i][1]
        assert (pred == _predictions(m, digits_data)).all()
    fp32 = [evaluate(m, digits_data.x_test, digits_data.y_test) for m in (m0, m1)]
    assert fp32[0] > 98.0 > fp32[1]
    runs = result["runs"]
    assert [(r["method"], r["seed"], r["model_seed"], r["fp32_accuracy"]) for r in runs] == [
        ("tq", 0, 0, fp32[0]), ("uniform", 0, 0, fp32[0]), ("inq", 0, 0, fp32[0]),
        ("tq", 1, 1, fp32[1]), ("uniform", 1, 1, fp32[1]), ("inq", 1, 1, fp32[1])]
    assert set(runs[0]) == TQ_RUN_KEYS | {"model_seed", "fp32_accuracy"}
    assert [r["accuracy"] for r in runs] == list(_FakeTQ.ACCURACY)
    # mean and std over models, mean flips, per configuration
    s = result["summary"]["tq-elt 2b 0ep"]
    assert set(s) == SUMMARY_KEYS | {"model_seeds"}
    assert s["model_seeds"] == [0, 1] and s["seeds"] == 2
    assert s["accuracy_mean"] == 97.0 and s["accuracy_std"] == statistics.stdev([98.0, 96.0])
    assert (s["accuracy_min"], s["accuracy_max"], s["flips_mean"]) == (96.0, 98.0, 4.0)
    assert s["average_bits_mean"] == 1.75
    assert result["summary"]["inq 2b 0ep"]["flips_mean"] == 31.5
    assert result["fp32_accuracy"] == statistics.fmean(fp32)
    assert result["fp32_accuracy_by_model_seed"] == {"0": fp32[0], "1": fp32[1]}
    assert result["settings"]["model_seeds"] == [0, 1]
    assert result["settings"]["seeds"] == [0, 1]
    assert result["coding_gain_db"] == {"0": {"3": {"elt": 1.5}}, "1": {"3": {"elt": 2.5}}}
    assert json.loads((tmp_path / "tq.json").read_text()) == json.loads(json.dumps(result))
    lines = bt.format_tq(result).splitlines()
    std = statistics.stdev(fp32)
    assert lines[0].startswith(f"digits fp32 {statistics.fmean(fp32):.2f} +/- {std:.2f} % "
                               f"over 2 models (seeds 0 1; TQ seed = model seed)")
    assert "mean +/- std over models" in lines[0]
    (row,) = [line for line in lines if line.startswith("tq-elt 2b 0ep")]
    assert row.split()[-5:] == ["97.00", "+/-", "1.41", "0.5000", "4.0"]


def test_default_mode_keeps_one_model_and_the_keys(fake, digits_reference):
    result = bt.bench_tq(seeds=(0, 2), baselines=False, out_dir=None, **TINY)
    assert fake.fit.calls == []
    assert [(t, s) for _, t, s in fake.tq.analyses] == [("elt", 0), ("elt", 2)]
    m0, m2 = (m for m, _, _ in fake.tq.analyses)
    assert m0 is m2 and _states_equal(m0, digits_reference)
    assert set(result) == RESULT_KEYS
    assert set(result["settings"]) == SETTINGS_KEYS
    assert [set(r) for r in result["runs"]] == [TQ_RUN_KEYS, TQ_RUN_KEYS]
    assert set(result["summary"]["tq-elt 2b 0ep"]) == SUMMARY_KEYS
    assert result["settings"]["seeds"] == [0, 2]
    assert bt.format_tq(result).splitlines()[0].endswith("mean +/- std over seeds)")
    assert [p.name for p in fake.cache.iterdir()] == [digits.CACHE_FILE]


def test_an_interrupted_bench_resumes_with_the_runs_it_saved(fake, tmp_path, capsys):
    options = dict(seeds=(0, 1), bits=(2.0,), transforms=("elt",), retrain_epochs=(0,),
                   plot=False, out_dir=tmp_path)
    full = bt.bench_tq(**options)
    assert full["complete"] is True and len(full["runs"]) == 6   # 2 seeds x (TQ + 2)
    assert len(fake.tq.analyses) == 2
    # as a bench stopped after its second run left it: every run is saved as it ends
    saved = json.loads((tmp_path / "tq.json").read_text())
    saved.update(complete=False, runs=saved["runs"][:2])
    (tmp_path / "tq.json").write_text(json.dumps(saved))
    fake.tq.analyses.clear()
    fake.tq.metrics_calls.clear()
    resumed = bt.bench_tq(resume=True, progress=True, **options)
    assert "resuming " in capsys.readouterr().err
    # seed 0's TQ run is done (no analysis again); its inq and all of seed 1 run
    assert [(t, s) for _, t, s in fake.tq.analyses] == [("elt", 1)]
    assert len(fake.tq.metrics_calls) == 4
    assert [bt._run_key(r) for r in resumed["runs"]] == [bt._run_key(r) for r in full["runs"]]
    assert resumed["runs"][:2] == saved["runs"] and resumed["complete"] is True
    assert json.loads((tmp_path / "tq.json").read_text())["complete"] is True
    # other settings are refused by name; without resume the file is overwritten
    with pytest.raises(ValueError, match=r"^Cannot resume from .*tq\.json: it was written "
                                         r"with other settings"):
        bt.bench_tq(resume=True, **{**options, "bits": (3.0,)})
    (tmp_path / "tq.json").write_text("{}")
    with pytest.raises(ValueError, match=r"not a tq bench result$"):
        bt.bench_tq(resume=True, **options)


def test_default_seeds(fake):
    bt.bench_tq(baselines=False, out_dir=None, **TINY)
    assert [s for _, _, s in fake.tq.analyses] == list(bt.DEFAULT_SEEDS) == [0, 1, 2]


@pytest.mark.parametrize(("options", "message"), [
    (dict(model_seeds=[0, -1]), "Model seeds must be non-negative integers, not -1 (in [0, -1])"),
    (dict(model_seeds=[True]), "Model seeds must be non-negative integers, not True (in [True])"),
    (dict(model_seeds=[1.0]), "Model seeds must be non-negative integers, not 1.0 (in [1.0])"),
    (dict(model_seeds=[]), "bench_tq needs at least one model seed"),
    (dict(model_seeds=[3, 1, 3]), "Model seeds must be distinct, not [3, 1, 3]"),
    (dict(model_seeds=[0], seeds=[0]),
     "bench_tq takes seeds or model_seeds, not both (with model_seeds each model's training "
     "seed is also its TQ seed)"),
    (dict(seeds=[]), "bench_tq needs at least one seed"),
    (dict(retrain_epochs=[0, -3]), "Retrain epochs must be non-negative integers, not -3"),
    (dict(retrain_epochs=[1.5]), "Retrain epochs must be non-negative integers, not 1.5"),
    (dict(retrain_epochs=[]),
     "bench_tq needs at least one target (bits) and one retraining budget"),
    (dict(bits=[2.0, 9.0]), "TQ average bits must be a number in (0, 8], not 9.0"),
    (dict(bits=[0]), "TQ average bits must be a number in (0, 8], not 0"),
])
def test_bad_options_fail_before_any_work(monkeypatch, options, message):
    def no_model(**_):
        raise AssertionError("bench_tq loaded a model before checking its options")

    monkeypatch.setattr(digits, "pretrained", no_model)
    with pytest.raises(ValueError) as info:
        bt.bench_tq(out_dir=None, **options)
    assert str(info.value) == message


# --- the command line -----------------------------------------------------------------------


@pytest.fixture
def recorded(monkeypatch):
    """Replaces bench_tq by a recorder returning an empty result."""
    calls: list[dict] = []

    def record(**kwargs):
        calls.append(kwargs)
        return {"fp32_accuracy": 99.0, "summary": {}}

    monkeypatch.setattr(bt, "bench_tq", record)
    return calls


def test_cli_passes_model_seeds_and_retrain_epochs(recorded, tmp_path, capsys):
    out = tmp_path / "r" / "tq.json"
    assert main(["bench", "tq", "--model-seeds", "0", "1", "2", "--retrain-epochs", "0",
                 "--bits", "2", "-o", str(out)]) == 0
    assert recorded == [dict(bits=(2.0,), seeds=None, model_seeds=(0, 1, 2),
                             retrain_epochs=(0,), out_dir=out.parent, progress=True,
                             workload="digits", resume=False, jobs=1)]
    assert json.loads(out.read_text()) == {"fp32_accuracy": 99.0, "summary": {}}
    assert capsys.readouterr().out.endswith(f"wrote {out}\n")


def test_cli_defaults_are_unchanged(recorded, tmp_path):
    assert main(["bench", "tq", "-o", str(tmp_path / "tq.json")]) == 0
    assert recorded == [dict(bits=(2.0, 3.0), seeds=(0, 1, 2), model_seeds=None,
                             retrain_epochs=(0, 3), out_dir=tmp_path, progress=True,
                             workload="digits", resume=False, jobs=1)]
    assert main(["bench", "tq", "-o", str(tmp_path / "tq.json"), "--resume", "--jobs", "2"]) == 0
    assert recorded[-1]["resume"] is True and recorded[-1]["jobs"] == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--model-seeds", "0", "-1"], "hwq bench tq: error: argument --model-seeds: must be an integer >= 0, not '-1'"),
    (["--model-seeds", "2", "2"], "hwq bench: error: Model seeds must be distinct, not [2, 2]"),
    (["--seeds", "0", "--model-seeds", "1"], "hwq bench: error: bench_tq takes seeds or model_seeds, not both"),
    (["--retrain-epochs", "-1"], "hwq bench tq: error: argument --retrain-epochs: must be an integer >= 0, not '-1'"),
    (["--bits", "0.1"], "hwq bench: error: TQ average bits must be at least 0.3421 for the digits model (its smallest allocation), not 0.1"),
])
def test_cli_bad_values_are_one_line_exit_2(monkeypatch, tmp_path, capsys, argv, message):
    monkeypatch.setattr(digits, "pretrained", None)  # never reached
    out = tmp_path / "tq.json"
    assert main(["bench", "tq", *argv, "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1
    assert not out.exists()


def test_cli_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "tq", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--model-seeds SEED [SEED ...] instead of --seeds: one fp32 model per seed" in text
    assert "--retrain-epochs E [E ...] retraining budgets in epochs, 0 = post-training " \
           "(default 0 3)" in text


def test_cli_checks_the_budget_against_the_chosen_model(monkeypatch, tmp_path, capsys):
    from hwq.quant.tq import smallest_bits
    from hwq.workloads import Workload, get_workload

    need, weights = smallest_bits(get_workload("lenet5").build())
    monkeypatch.setattr(Workload, "pretrained", None)  # refused before any model is trained
    assert main(["bench", "tq", "--model", "lenet5", "--bits", "0.001", "-o",
                 str(tmp_path / "tq.json")]) == 2
    assert capsys.readouterr().err == (
        f"hwq bench: error: TQ average bits must be at least {need / weights:.4g} for the "
        "lenet5 model (its smallest allocation), not 0.001\n")


def test_baselines_average_bits_over_the_models_own_weights(digits_data, monkeypatch):
    """Regression: the baselines' average bits were divided by the digits network's 15,248
    weights whatever the workload."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    weights = 4 * 9 + 144 * 10
    monkeypatch.setattr(bt, "_network_metrics", lambda *a: {
        "accuracy": 50.0, "test_nll": 1.0, "flips": 3, "weight_bits_total": 4 * weights,
        "mismatches": 0})
    logged = []
    runs = bt._baselines(model, digits_data, [4], [0], 0, False, None, {}, logged.append)
    assert [(r["method"], r["average_bits"]) for r in runs] == [("uniform", 4.0), ("inq", 4.0)]
    assert logged == runs


def test_baselines_retrain_with_the_workloads_options(digits_data, monkeypatch):
    """Regression: the retraining baselines ran at the methods' default lr, which diverges on
    the BatchNorm-folded residual net, instead of the workload's (``Workload.method_options``)."""
    import hwq.quant.inq as inq_mod
    import hwq.quant.uniform as uniform_mod

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    seen = []

    def record(name):
        def quantize(folded, data, **kw):
            seen.append((name, kw.get("lr"), kw["epochs"]))
            return uniform_mod.quantize_uniform(folded, data, bits=kw["bits"])
        return quantize

    monkeypatch.setattr(uniform_mod, "quantize_uniform_qat", record("uniform-qat"))
    monkeypatch.setattr(inq_mod, "quantize_inq", record("inq"))
    monkeypatch.setattr(bt, "_network_metrics", lambda *a: {
        "accuracy": 50.0, "test_nll": 1.0, "flips": 3, "weight_bits_total": 1, "mismatches": 0})
    bt._baselines(model, digits_data, [4], [3], 0, False, None, {},
                  method_options={"uniform-qat": {"lr": 0.001}, "inq": {"lr": 0.002},
                                  "slq": {"lr": 0.5}})
    assert seen == [("uniform-qat", 0.001, 3), ("inq", 0.002, 1)]
    seen.clear()
    bt._baselines(model, digits_data, [4], [3], 0, False, None, {})
    assert seen == [("uniform-qat", None, 3), ("inq", None, 1)]


def test_settings_record_the_baselines_options(fake):
    result = bt.bench_tq(bits=[3.0], transforms=["identity"], retrain_epochs=[0], seeds=[0],
                         baselines=False, out_dir=None, plot=False)
    assert result["settings"]["baseline_options"] == {"uniform-qat": {}, "inq": {}}


def test_jobs_give_the_same_runs_in_plan_order(digits_cache_dir, monkeypatch, tmp_path,
                                               capsys):
    """Real TQ on digits in two worker processes: the runs equal the in-process ones and are
    listed in plan order (seed, transform, baselines)."""
    monkeypatch.setenv(digits.CACHE_ENV, str(digits_cache_dir))   # workers inherit it
    kwargs = dict(bits=(3.0,), transforms=("identity",), retrain_epochs=(0,), seeds=(0, 1),
                  calib_size=64, plot=False)
    one = bt.bench_tq(out_dir=tmp_path / "one", **kwargs)
    two = bt.bench_tq(out_dir=tmp_path / "two", jobs=2, progress=True, **kwargs)

    def same(run):
        return {k: v for k, v in run.items() if k != "seconds"}

    assert [same(r) for r in two["runs"]] == [same(r) for r in one["runs"]]
    assert [(r["seed"], r["method"]) for r in two["runs"]] == [
        (s, m) for s in (0, 1) for m in ("tq", "uniform", "inq")]
    assert two["coding_gain_db"] == one["coding_gain_db"]
    err = capsys.readouterr().err
    assert "4 groups of runs over 2 worker processes" in err
    assert sorted(line.split("]")[0] for line in err.splitlines() if line.startswith("[")) == [
        f"[{i}/6" for i in range(1, 7)]
    with pytest.raises(ValueError, match="Bench jobs must be an integer >= 1, not 0"):
        bt.bench_tq(jobs=0, out_dir=None, **kwargs)
