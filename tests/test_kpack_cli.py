"""``--pack`` on the commands that take core options (K packing, hwq.layout.kpack)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwq import serialize
from hwq.layout import compile, core_config
from hwq.testing import kpack_network

from .test_cli import _run, _usage


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kpack-cli")
    net = kpack_network(np.random.default_rng(4), c_in=10, kind="pot", bits=[3, 4], hw=(5, 5),
                        lanes=8, simd=8)
    program = compile(net, core_config(net, pe="shift_add", lanes=8, simd=8))
    return {"net": serialize.save(net, folder / "net.safetensors"),
            "program": program.save(folder / "prog.hwqp")}


@pytest.mark.parametrize("argv, end", [
    (["flow", "--pack", "yes"], "argument --pack: invalid choice: 'yes' (choose from "
                                "{q}auto{q}, {q}on{q}, {q}off{q}) (see hwq flow --help)"),
    (["rtl", "--pe", "multiply", "--pack", "auto", "-o", "x"],
     "argument --pack: invalid choice: 'auto' (choose from {q}on{q}, {q}off{q}) "
     "(see hwq rtl --help)"),
    (["build", "--board", "ulx3s-85f", "--pe", "shift_add", "--pack", "auto", "-o", "x"],
     "--pack auto applies with --network (it compares the network's cycles); give on or off"),
])
def test_bad_pack_usage_is_one_line(capsys, argv, end):
    line = _usage(capsys, *argv)
    assert line.endswith(end.format(q="")) or line.endswith(end.format(q="'"))


def test_sim_refuses_pack_with_a_program(capsys, files):
    line = _usage(capsys, "sim", str(files["program"]), "--pack", "on")
    assert line.startswith("hwq sim: error: --pack applies to a network, not to the Program")


def test_rtl_writes_a_packed_core(capsys, tmp_path):
    code, _, _ = _run(capsys, "rtl", "--pe", "multiply", "--lanes", "2", "--simd", "4",
                      "--pack", "on", "--act-depth", "256", "--weight-depth", "256",
                      "--param-depth", "16", "--desc-depth", "4", "-o", str(tmp_path))
    assert code == 0
    assert json.loads((tmp_path / "hwq_config.json").read_text())["config"]["pack"] is True


@pytest.mark.parametrize("pack, packed", [("off", False), ("on", True), ("auto", True)])
def test_sim_packs_a_network_on_request(capsys, files, pack, packed):
    code, out, _ = _run(capsys, "sim", str(files["net"]), "--pe", "shift_add", "--inputs",
                        "random", "--limit", "2", "--pack", pack, "--no-progress", "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["mismatches"] == 0
    assert result["core"]["pack"] is packed
    assert result["cycle_model_mismatches"] == []


def test_bench_util_network_reports_packing():
    from hwq.bench.util import network_util

    net = kpack_network(np.random.default_rng(5), c_in=20, kind="pot", bits=[4], lanes=8,
                        simd=8, zero_taps=0.0)
    off = network_util(net, pe="shift_add", lanes=8, simd=8)
    on = network_util(net, pe="shift_add", lanes=8, simd=8, pack="on")
    assert (off["packed"], on["packed"]) == (False, True)
    assert on["cycles"] < off["cycles"] and on["utilization"] > off["utilization"]
