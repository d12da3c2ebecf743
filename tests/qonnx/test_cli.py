"""``hwq import`` and ``hwq export --qonnx``: results, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwq import golden
from hwq.cli import main
from hwq.serialize import load, save
from hwq.testing import random_graph_network, random_inputs
from tests.qonnx.graphs import Graph, conv_net


@pytest.fixture
def cli(capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def net_file(tmp_path):
    net = random_graph_network(np.random.default_rng(5), blocks=["res", "dw", "avgpool"])
    return net, save(net, tmp_path / "net.safetensors")


def test_export_then_import_round_trips(cli, net_file, tmp_path):
    net, path = net_file
    onnx_path = tmp_path / "model.onnx"
    code, out, err = cli("export", "--qonnx", str(path), "-o", str(onnx_path), "--batch", "3",
                         "--check", "7", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["ok"] and data["outputs_differing"] == 0 and data["checked_inputs"] == 7
    assert data["batch"] == 3 and data["ops"] == len(net.ops) and onnx_path.is_file()
    back = tmp_path / "back.safetensors"
    code, out, err = cli("import", str(onnx_path), "-o", str(back), "--json", "--check", "5")
    assert code == 0, err
    data = json.loads(out)
    assert data["exact"] and data["approximations"] == {} and data["ops"] == len(net.ops)
    assert data["ok"] and data["outputs_differing"] == 0 and data["checked_inputs"] == 5
    x = random_inputs(np.random.default_rng(0), net, 5)
    np.testing.assert_array_equal(golden.run(load(back), x), golden.run(net, x))


def test_export_text_output(cli, net_file, tmp_path):
    _, path = net_file
    code, out, _ = cli("export", "--qonnx", str(path), "-o", str(tmp_path / "m.onnx"),
                       "--check", "2")
    assert code == 0
    assert "QONNX nodes" in out and "on 2 random inputs: 0 of" in out


def test_import_text_names_the_approximations(cli, tmp_path):
    model, _ = conv_net(conv_mode="ROUND")
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    code, out, err = cli("import", str(src), "-o", str(tmp_path / "n.safetensors"))
    assert code == 0, err
    assert "exact: no" in out and "ties (exactly k + 1/2) round half up in hwq" in out


@pytest.mark.parametrize("mode, code", [("FLOOR", 1), ("ROUND", 0)])
def test_import_check_fails_only_an_exact_import(cli, tmp_path, monkeypatch, mode, code):
    """An exact import that differs from qonnx is a failure; an approximate one reports."""
    model, _ = conv_net(conv_mode=mode, fc_mode=mode)
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    monkeypatch.setattr("hwq.qonnx.cli_import.check_import", lambda *a: (2, 96))
    got, out, err = cli("import", str(src), "-o", str(tmp_path / "n.safetensors"), "--json")
    data = json.loads(out)
    assert got == code and data["ok"] is (code == 0) and data["outputs_differing"] == 2
    assert data["exact"] is (mode == "FLOOR")
    assert ("the import is exact but 2 outputs differ" in err) is (code == 1)


def test_import_check_runs_qonnx(cli, tmp_path):
    model, _ = conv_net()
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    code, out, err = cli("import", str(src), "-o", str(tmp_path / "n.safetensors"), "--json",
                         "--check", "40")
    data = json.loads(out)
    assert code == 0 and data["exact"] and data["outputs_differing"] == 0, err
    assert data["checked_inputs"] == 40


def test_import_check_is_skipped_without_fixed_shapes(cli, tmp_path):
    model, _ = conv_net()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    code, out, err = cli("import", str(src), "-o", str(tmp_path / "n.safetensors"), "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] and "not all fixed" in data["check_skipped"], err
    assert "outputs_differing" not in data


def test_a_differing_check_exits_1(cli, net_file, tmp_path, monkeypatch):
    _, path = net_file
    monkeypatch.setattr("hwq.qonnx.cli_export.check_export", lambda *a: (3, 40))
    code, out, err = cli("export", "--qonnx", str(path), "-o", str(tmp_path / "m.onnx"),
                         "--json")
    assert code == 1
    assert json.loads(out)["ok"] is False and json.loads(out)["outputs_differing"] == 3
    assert err.strip().splitlines() == ["hwq export: error: qonnx's execution differs from "
                                        "hwq.golden in 3 outputs"]


@pytest.mark.parametrize("argv, message", [
    (["export", "{net}", "-o", "{tmp}/m.onnx"], "Choose the output format: --qonnx"),
    (["export", "--qonnx", "{net}", "-o", "{tmp}/m.onnx", "--batch", "0"],
     "--batch must be an integer of at least 1, not 0"),
    (["export", "--qonnx", "{tmp}/none.safetensors", "-o", "{tmp}/m.onnx"],
     "No network file at"),
    (["export", "--qonnx", "{net}", "-o", "{tmp}"], "is a directory"),
    (["export", "--qonnx", "{net}", "-o", "{net}/m.onnx"], "is not writable"),
    (["import", "{tmp}/none.onnx", "-o", "{tmp}/n.safetensors"], "No ONNX model at"),
    (["import", "{net}", "-o", "{tmp}/n.safetensors"], "not an ONNX model"),
])
def test_bad_usage_exits_2_with_one_line(cli, net_file, tmp_path, argv, message):
    _, path = net_file
    argv = [a.format(net=path, tmp=tmp_path) for a in argv]
    code, out, err = cli(*argv, "--json")
    assert code == 2
    assert message in json.loads(out)["error"]
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "m.onnx").exists()


def test_unsupported_model_names_the_node(cli, tmp_path):
    g = Graph()
    model = g.model(g.node("Sigmoid", [g.quant("x", 0.5, 8)]))
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    code, _, err = cli("import", str(src), "-o", str(tmp_path / "n.safetensors"))
    assert code == 2
    assert "node 'sigmoid1' (Sigmoid): op type 'Sigmoid' is not supported" in err
    assert not (tmp_path / "n.safetensors").exists()


def test_missing_extra_exits_1(cli, net_file, tmp_path, monkeypatch):
    from hwq.qonnx import MissingExtra

    def missing(module):
        raise MissingExtra(f'QONNX import/export needs the \'onnx\' extra: pip install '
                           f'"hwq[onnx]" (cannot import {module})')
    monkeypatch.setattr("hwq.qonnx.require", missing)
    _, path = net_file
    code, _, err = cli("export", "--qonnx", str(path), "-o", str(tmp_path / "m.onnx"))
    assert code == 1 and 'pip install "hwq[onnx]"' in err


@pytest.mark.parametrize("command", ["import", "export"])
def test_help(cli, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
