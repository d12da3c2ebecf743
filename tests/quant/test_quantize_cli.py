"""``hwq quantize`` and :func:`hwq.quant.quantize`: results, JSON fields, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwq import golden
from hwq.cli import main
from hwq.quant import methods
from hwq.quant.api import quantize
from hwq.serialize import load

WEIGHTS = 15248  # conv + linear weights of the digits model


@pytest.fixture
def cli(digits_reference, digits_cache_dir, monkeypatch, capsys):
    """Run ``hwq quantize ...`` in-process on the session's cached digits model."""
    monkeypatch.setenv("HWQ_CACHE_DIR", str(digits_cache_dir))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["quantize", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _golden_accuracy(path, data) -> float:
    net = load(path)
    xi = golden.quantize_input(data.x_test.numpy(), net.input_scale, net.act_bits)
    out = golden.run(net, xi)
    return 100.0 * float((out.argmax(1) == data.y_test.numpy()).sum()) / len(data.y_test)


def test_json_result_of_uniform_4_bits(cli, tmp_path, digits_data):
    path = tmp_path / "net.safetensors"
    code, out, err = cli("--method", "uniform", "--bits", "4", "-o", str(path), "--json",
                         "--no-progress")
    assert code == 0
    assert err == ""
    data = json.loads(out)  # exactly one JSON object
    assert out.count("\n") == 1
    assert {"fp32_accuracy", "accuracy", "weight_bits_total", "compression_ratio", "method",
            "bits", "fake_quant_accuracy", "output"} <= set(data)
    assert data["ok"] is True and data["model"] == "digits"
    assert (data["method"], data["bits"], data["act_bits"], data["seed"]) == ("uniform", 4, 8, 0)
    assert data["weight_bits_total"] == 4 * WEIGHTS
    assert data["weight_count"] == WEIGHTS
    assert data["compression_ratio"] == 8.0
    assert data["output"] == str(path)
    assert data["output_mismatches"] == 0
    assert data["accuracy"] == data["fake_quant_accuracy"]
    assert data["fp32_accuracy"] >= 98.0 and data["accuracy"] >= 97.0
    # the file holds the network that was measured
    assert _golden_accuracy(path, digits_data) == data["accuracy"]
    meta = load(path).meta
    assert (meta["method"], meta["bits"], meta["model"]) == ("uniform", 4, "digits")
    assert meta["accuracy"] == data["accuracy"]
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]  # no temp file left


def test_text_result(cli, tmp_path):
    path = tmp_path / "net8.safetensors"
    code, out, err = cli("--bits", "8", "-o", str(path), "--calibration", "percentile")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"digits: uniform, 8-bit weights, 8-bit activations -> {path}"
    assert lines[1].startswith("  fp32 accuracy ")
    assert lines[2].startswith("  quantized accuracy ") and "golden model" in lines[2]
    assert lines[3] == f"  weight storage       {8 * WEIGHTS} bits (14.9 KiB) for {WEIGHTS} weights"
    assert lines[4] == "  compression ratio    4.00x vs fp32 weights"
    assert load(path).meta["options"] == {"calibration": "percentile", "percentile": 99.99}


@pytest.mark.parametrize("argv, message", [
    (["--bits", "9"], "Method 'uniform' takes --bits 2..8, not 9"),
    (["--bits", "1"], "Method 'uniform' takes --bits 2..8, not 1"),
    (["--method", "uniform-qat", "--bits", "0"], "Method 'uniform-qat' takes --bits 2..8, not 0"),
    (["--method", "inq", "--bits", "8"], "Method 'inq' takes --bits 2..7, not 8"),
    (["--method", "mlq", "--bits", "3"], "Method 'mlq' takes --bits 2, not 3"),
    (["--method", "foo", "--bits", "4"],
     "Unknown quantization method 'foo'; allowed: uniform, uniform-qat, inq, slq, mlq, tq, joint"),
    (["--bits", "4", "--epochs", "3"],
     "--epochs applies only to retraining methods (uniform-qat, inq, slq, mlq, tq, joint), not 'uniform'"),
    (["--bits", "4", "--calibration", "kl"],
     "Calibration must be one of max, percentile, not 'kl'"),
    (["--bits", "4", "--act-bits", "17"],
     "argument --act-bits: must be an integer in 2..16, not '17' (see hwq quantize --help)"),
    (["--bits", "4", "--model", "cifar"], "Unknown model 'cifar'; allowed: digits, lenet5, resnet8, sepnet, "
                                      "path/to/file.py:function or FILE.pt2"),
])
def test_bad_usage_exits_2_with_one_line(cli, tmp_path, argv, message):
    path = tmp_path / "net.safetensors"
    code, out, err = cli(*argv, "-o", str(path), "--no-progress")
    assert code == 2
    assert out == ""
    assert err == f"hwq quantize: error: {message}\n"
    assert not path.exists()


def test_bad_usage_with_json(cli, tmp_path):
    code, out, err = cli("--bits", "9", "-o", str(tmp_path / "n.safetensors"), "--json")
    assert code == 2
    assert json.loads(out) == {"ok": False, "exit_code": 2,
                               "error": "Method 'uniform' takes --bits 2..8, not 9"}
    assert err.count("\n") == 1


def test_unparsable_bits_is_an_argparse_error(cli, tmp_path, capsys):
    code = main(["quantize", "--bits", "four", "-o", str(tmp_path / "n.safetensors")])
    assert code == 2
    assert capsys.readouterr().err == ("hwq quantize: error: argument --bits: invalid float "
                                       "value: 'four' (see hwq quantize --help)\n")


def test_unavailable_method(cli, tmp_path, monkeypatch):
    missing = methods.Method("hwq.quant._not_written_yet:quantize_inq", (2, 7), True, "INQ")
    monkeypatch.setitem(methods.METHODS, "inq", missing)
    code, out, err = cli("--method", "inq", "--bits", "4", "-o", str(tmp_path / "n.safetensors"))
    assert code == 2
    assert err == ("hwq quantize: error: Method 'inq' is not available in this hwq "
                   "(module hwq.quant._not_written_yet is missing)\n")


def test_output_directory_is_refused(cli, tmp_path):
    code, _, err = cli("--bits", "4", "-o", str(tmp_path))
    assert code == 2
    assert err == (f"hwq quantize: error: -o/--output {tmp_path}: cannot write there: it is a "
                   "folder, not a file\n")


def test_qat_through_the_cli(cli, tmp_path, digits_data):
    path = tmp_path / "qat.safetensors"
    code, out, err = cli("--method", "uniform-qat", "--bits", "3", "--epochs", "1", "--lr",
                         "0.01", "--seed", "1", "-o", str(path), "--json")
    assert code == 0
    assert "uniform-qat 3b" in err  # the training progress bar, on stderr
    data = json.loads(out)
    assert (data["method"], data["bits"], data["seed"]) == ("uniform-qat", 3, 1)
    assert data["options"]["epochs"] == 1 and data["options"]["lr"] == 0.01
    assert data["weight_bits_total"] == 3 * WEIGHTS
    assert data["compression_ratio"] == 32 / 3
    assert data["output_mismatches"] == 0
    assert _golden_accuracy(path, digits_data) == data["accuracy"] >= 95.0


def test_quantize_api_validates_before_work(digits_model, digits_data):
    with pytest.raises(ValueError, match=r"Unknown quantization method 'gptq'; allowed: "
                                         r"uniform, uniform-qat, inq, slq, mlq"):
        quantize(digits_model, "gptq", bits=4, data=digits_data)
    with pytest.raises(ValueError, match=r"quantize needs data"):
        quantize(digits_model, "uniform", bits=4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epochs'"):
        quantize(digits_model, "uniform", bits=4, data=digits_data, epochs=3, progress=False)


def test_quantize_api_result(digits_model, digits_data):
    result = quantize(digits_model, "uniform", bits=5, data=digits_data, act_bits=6,
                      progress=False)
    assert result.network.act_bits == 6
    assert result.weight_bits_total == result.network.weight_storage_bits() == 5 * WEIGHTS
    assert result.compression_ratio == 32 / 5
    assert result.output_mismatches == 0
    assert result.fake_quant_accuracy == result.accuracy
    assert abs(result.fake_quant_float_accuracy - result.accuracy) <= 0.2
    assert set(result.timings) == {"load", "fold", "method", "integerize", "evaluate", "total"}
    summary = result.to_dict()
    assert json.loads(json.dumps(summary)) == summary
    for name, qw in result.qweights.items():
        np.testing.assert_array_equal(
            next(op for op in result.network.ops if op.name == name).weight, qw.values)


@pytest.mark.parametrize("argv, message", [
    (["--method", "inq", "--bits", "4.5"], "Method 'inq' takes --bits 2..7, not 4.5"),
    (["--method", "uniform"], "Method 'uniform' needs --bits"),
    (["--method", "tq", "--bits", "9"], "Method 'tq' takes --bits in 1..8 (average bits per weight), not 9.0"),
    (["--method", "inq", "--bits", "4", "--transform", "klt"], "--transform applies only to --method tq, not 'inq'"),
    (["--method", "uniform", "--bits", "4", "--compression", "50"], "--compression applies only to --method joint, not 'uniform'"),
    (["--method", "joint"], "Method 'joint' needs --compression X or --budget-bits BITS"),
    (["--method", "inq", "--bits", "4", "--anneal-epochs", "5"], "--anneal-epochs applies only to --method joint, not 'inq'"),
    (["--method", "joint", "--compression", "9", "--epochs", "4", "--anneal-epochs", "5"], "Joint anneal epochs must be at most the ADMM epochs (4), not 5"),
    (["--method", "uniform", "--bits", "4", "--schedule", "0.5", "1"], "--schedule applies only to --method inq or slq, not 'uniform'"),
    (["--method", "inq", "--bits", "4", "--schedule", "0.5", "0.4", "1"], "INQ schedule must be an increasing list of portions in (0, 1] ending in 1, not [0.5, 0.4, 1.0]"),
    (["--method", "slq", "--bits", "3", "--schedule", "0.5"], "SLQ schedule must be an increasing list of portions in (0, 1] ending in 1, not [0.5]"),
    (["--method", "inq", "--bits", "4", "--codebook-scale", "channel"], "--codebook-scale applies only to --method slq or mlq, not 'inq'"),
    (["--bits", "4", "--percentile", "99"], "--percentile applies to --calibration percentile, not 'max'"),
    (["--bits", "4", "--seed", "-1"], "argument --seed: must be an integer >= 0, not '-1' (see hwq quantize --help)"),
    (["--bits", "4", "--act-bits", "99"], "argument --act-bits: must be an integer in 2..16, not '99' (see hwq quantize --help)"),
    (["--bits", "4", "--calibration", "percentile", "--percentile", "0"], "argument --percentile: must be a number in (0, 100], not '0' (see hwq quantize --help)"),
    (["--method", "uniform-qat", "--bits", "4", "--lr", "nan"], "argument --lr: must be a positive number, not 'nan' (see hwq quantize --help)"),
])
def test_method_specific_options(cli, tmp_path, argv, message):
    code, out, err = cli(*argv, "-o", str(tmp_path / "n.safetensors"))
    assert code == 2
    assert err == f"hwq quantize: error: {message}\n"
    assert not (tmp_path / "n.safetensors").exists()


USER_MODEL = """
import numpy as np
import torch
from torch import nn


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.a(x))
        y = torch.relu(y + self.b(y))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def build():
    torch.manual_seed(0)
    return Residual().eval()


def with_data():
    rng = np.random.default_rng(0)
    x = rng.random((40, 2, 6, 6)).astype(np.float32)
    return build(), {"x": x, "y": rng.integers(0, 3, 40)}


def broken():
    raise RuntimeError("no weights here")
"""


def test_your_own_model_file_and_data(cli, tmp_path):
    (tmp_path / "mine.py").write_text(USER_MODEL)
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x_train=rng.random((30, 2, 6, 6)).astype(np.float32),
             y_train=rng.integers(0, 3, 30), x_test=rng.random((10, 2, 6, 6)).astype(np.float32),
             y_test=rng.integers(0, 3, 10))
    out = tmp_path / "net.safetensors"
    code, stdout, err = cli("--model", f"{tmp_path / 'mine.py'}:build", "--data",
                            str(tmp_path / "d.npz"), "--bits", "4", "-o", str(out), "--json",
                            "--no-progress")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["ok"] is True and result["output_mismatches"] == 0
    net = load(out)
    assert [op.kind for op in net.ops] == ["conv2d", "conv2d", "add", "global_avgpool2d",
                                          "flatten", "linear"]
    # a function that returns its data needs no --data
    code, stdout, err = cli("--model", f"{tmp_path / 'mine.py'}:with_data", "--bits", "4",
                            "-o", str(out), "--json", "--no-progress")
    assert code == 0, err
    assert load(out).input_shape == (2, 6, 6)


@pytest.mark.parametrize("model, data, message", [
    ("{dir}/mine.py:build", None, "--model {dir}/mine.py:build returns no data: give "
                                  "--data FILE.npz"),
    ("{dir}/mine.py:nothing", None, "{dir}/mine.py has no function 'nothing'"),
    ("{dir}/mine.py:broken", None, "{dir}/mine.py:broken() failed: RuntimeError: no weights "
                                   "here"),
    ("{dir}/none.py:build", None, "No model file at {dir}/none.py"),
    ("resnet50", None, "Unknown model 'resnet50'; allowed: digits, lenet5, resnet8, sepnet, "
                       "path/to/file.py:function or FILE.pt2"),
    ("{dir}/mine.py:build", "bad.npz", "{dir}/bad.npz must hold x_train, y_train, x_test, "
                                       "y_test (or x and y), not ['images']"),
    ("{dir}/mine.py:build", "wrong.npz", "Model {dir}/mine.py:build does not take the data's "
                                         "images of shape (3, 6, 6): "),
])
def test_your_own_model_refusals(cli, tmp_path, model, data, message):
    (tmp_path / "mine.py").write_text(USER_MODEL)
    np.savez(tmp_path / "bad.npz", images=np.zeros((4, 2, 6, 6)))
    np.savez(tmp_path / "wrong.npz", x=np.zeros((10, 3, 6, 6), np.float32),
             y=np.zeros(10, np.int64))
    argv = ["--model", model.format(dir=tmp_path), "--bits", "4", "-o",
            str(tmp_path / "o.safetensors")]
    if data:
        argv += ["--data", str(tmp_path / data)]
    code, out, err = cli(*argv)
    assert code == 2
    assert err.startswith("hwq quantize: error: " + message.format(dir=tmp_path))
    assert err.count("\n") == 1


def test_compressed_option_writes_a_file_that_loads_as_the_network(cli, tmp_path):
    from hwq.serialize import to_bytes

    path, packed = tmp_path / "net.safetensors", tmp_path / "net.hwqz"
    code, out, err = cli("--bits", "3", "-o", str(path), "--compressed", str(packed), "--json",
                         "--no-progress")
    assert code == 0 and err == ""
    data = json.loads(out)["compressed"]
    assert data["output"] == str(packed) and data["file_bytes"] == packed.stat().st_size
    raw = packed.read_bytes()
    assert int.from_bytes(raw[5:13], "little") == data["stream_bits"]
    assert to_bytes(load(packed)) == to_bytes(load(path))
    # a bad --compressed target is bad usage before any work
    code, out, err = cli("--bits", "3", "-o", str(path), "--compressed", str(tmp_path))
    assert code == 2 and "--compressed" in err and err.count("\n") == 1


def test_schedule_reaches_the_method(cli, tmp_path):
    """``--schedule 1``: INQ in one step, every weight rounded to its power of two at once
    (the bench's post-training ``pot`` row); the method receives it (unknown options raise)."""
    path = tmp_path / "pot.safetensors"
    code, out, _ = cli("--method", "inq", "--bits", "4", "--schedule", "1", "-o", str(path),
                       "--json", "--no-progress")
    assert code == 0
    data = json.loads(out)
    assert data["options"]["schedule"] == [1.0]


def test_codebook_scale_reaches_slq(cli, tmp_path, digits_data):
    """``--codebook-scale channel``: per-channel scales behind one table, bit-exact."""
    path = tmp_path / "slq.safetensors"
    code, out, _ = cli("--method", "slq", "--bits", "2", "--epochs", "1",
                       "--codebook-scale", "channel", "-o", str(path), "--json",
                       "--no-progress")
    assert code == 0
    data = json.loads(out)
    assert data["options"]["scale"] == "channel" and data["output_mismatches"] == 0
    network = load(path)
    tables = [op.spec.table for op in network.ops if hasattr(op, "spec")]
    assert tables and all(t.size <= 3 for t in tables)
    assert _golden_accuracy(path, digits_data) == data["accuracy"]
