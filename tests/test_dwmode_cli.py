"""``--depthwise`` on the commands that take core options (the MAC array's depthwise mode,
hwq.layout.dwmode)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwq import serialize
from hwq.testing import depthwise_network

from .test_cli import _run, _usage


@pytest.fixture(scope="module")
def net_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dwmode-cli")
    net = depthwise_network(np.random.default_rng(4), channels=8, hw=(5, 5))
    return serialize.save(net, folder / "net.safetensors")


@pytest.mark.parametrize("argv, end", [
    (["flow", "--depthwise", "yes"], "argument --depthwise: invalid choice: 'yes' (choose from "
                                     "{q}auto{q}, {q}on{q}, {q}off{q}) (see hwq flow --help)"),
    (["rtl", "--pe", "multiply", "--depthwise", "auto", "-o", "x"],
     "argument --depthwise: invalid choice: 'auto' (choose from {q}on{q}, {q}off{q}) "
     "(see hwq rtl --help)"),
    (["build", "--board", "ulx3s-85f", "--pe", "shift_add", "--depthwise", "auto", "-o", "x"],
     "--depthwise auto applies with --network (it compares the network's cycles); give on "
     "or off"),
])
def test_bad_depthwise_usage_is_one_line(capsys, argv, end):
    line = _usage(capsys, *argv)
    assert line.endswith(end.format(q="")) or line.endswith(end.format(q="'"))


def test_rtl_writes_a_depthwise_core(capsys, tmp_path):
    code, _, _ = _run(capsys, "rtl", "--pe", "shift_add", "--depthwise", "on",
                      "--act-depth", "64", "--weight-depth", "64", "--param-depth", "16",
                      "--desc-depth", "4", "-o", str(tmp_path))
    assert code == 0
    config = json.loads((tmp_path / "hwq_config.json").read_text())["config"]
    assert config["depthwise"] is True and config["pack"] is True


@pytest.mark.parametrize("mode, on", [("off", False), ("on", True), ("auto", True)])
def test_sim_runs_a_network_in_the_depthwise_mode_on_request(capsys, net_file, mode, on):
    code, out, _ = _run(capsys, "sim", str(net_file), "--pe", "shift_add", "--inputs",
                        "random", "--limit", "2", "--depthwise", mode, "--no-progress", "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["mismatches"] == 0
    assert result["core"]["depthwise"] is on
