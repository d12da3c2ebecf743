"""The whole core on Verilator, driven through the host runtime, against hwq.golden.

Each PE type runs a small network with awkward shapes (channels not a multiple of the
lanes, K not a multiple of simd, stride 2, padding, a maxpool, a flatten), a digits-shaped
one and a random graph network (residual adds, depthwise and grouped convs, pools), per
PE in the weight formats it takes, on both backends (cocotb and the compiled C++ harness):
outputs must equal the golden model exactly, every layer's cycle counter must equal the
cycle model, and the two backends must agree on everything they report, the simulated bus
cycles of loading and inference included.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hwq import golden, serialize
from hwq.bench.sim import DIGITS_ARCH
from hwq.config import CoreConfig
from hwq.layout.compiler import compile as compile_network
from hwq.sim.simulate import BACKENDS, SimResult, simulate
from hwq.testing import DEFAULT_ARCH, random_inputs, random_network

CASES = [
    # pe, lanes, simd, weight format, bits (per channel), zero tiles, multipliers
    ("shift_add", 8, 8, "pot", [3, 4], 0.0, "inferred"),
    ("bit_serial", 8, 8, "int", [2, 3, 4], 0.3, "inferred"),
    ("bit_serial", 8, 8, "codebook", [2, 3], 0.0, "inferred"),
    ("multiply", 4, 4, "codebook", [2, 4], 0.3, "inferred"),
    # MULT18X18D blocks (hwq.rtl.dsp's model) in the PEs and the requant; 4-bit values:
    # two lanes per set of blocks, the third on its own
    ("multiply", 3, 3, "int", [3, 4], 0.3, "ecp5"),
]
NETWORKS = {"random": ((3, 8, 8), DEFAULT_ARCH), "digits": ((1, 8, 8), DIGITS_ARCH)}


def on_both_backends(program, x) -> SimResult:
    """Run ``x`` on every backend; assert they agree exactly; return the compiled result."""
    runs = {b: simulate(program, None, x, backend=b, jobs=1, progress=False) for b in BACKENDS}
    ref, fast = runs["cocotb"], runs["compiled"]
    assert (ref.backend, fast.backend) == ("cocotb", "compiled")
    np.testing.assert_array_equal(fast.outputs, ref.outputs)
    np.testing.assert_array_equal(fast.cycles, ref.cycles)
    np.testing.assert_array_equal(fast.layer_cycles, ref.layer_cycles)
    # the same transactions with the same timing: the host's bus cycles agree as well
    assert fast.extra["load_cycles"] == ref.extra["load_cycles"] > 0
    assert fast.infer_cycles == ref.infer_cycles > fast.cycles.sum()
    return fast


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("pe, lanes, simd, kind, bits, zeros, dsp", CASES,
                         ids=[f"{c[0]}-{c[3]}-{c[6]}" for c in CASES])
def test_core_matches_golden_and_cycle_model(pe, lanes, simd, kind, bits, zeros, dsp, network):
    rng = np.random.default_rng(7)
    input_shape, arch = NETWORKS[network]
    net = random_network(rng, kind=kind, bits=bits, per_channel_bits=True,
                         zero_tile_fraction=zeros, input_shape=input_shape, arch=arch)
    table = {"table_bits": max(bits)} if (pe, kind) == ("multiply", "int") else {}
    config = CoreConfig(pe=pe, lanes=lanes, simd=simd, weight_bits=max(bits), dsp=dsp, **table)
    program = compile_network(net, config)
    if network == "digits":  # a 1-channel input: stored in im2col order (issue 26)
        assert program.input.window is not None
    x = random_inputs(rng, net, 5)
    sim = on_both_backends(program, x)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    assert sim.layer_cycles.shape == (5, len(program.layers))
    np.testing.assert_array_equal(sim.layer_cycles,
                                  np.broadcast_to(sim.model_layer_cycles, sim.layer_cycles.shape))
    np.testing.assert_array_equal(sim.cycles, np.full(5, program.cycles()))
    assert sim.cycle_model_mismatches() == []


GRAPH_CASES = [
    # pe, weight format, lanes, simd
    ("shift_add", "pot", 4, 4),
    ("multiply", "codebook", 4, 2),
    ("multiply", "int", 2, 4),
    ("bit_serial", "int", 4, 4),
]


@pytest.mark.parametrize("pe, kind, lanes, simd", GRAPH_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}x{c[3]}" for c in GRAPH_CASES])
def test_graph_network_on_the_core(pe, kind, lanes, simd):
    # residual adds (identity and strided 1x1 shortcut), depthwise and grouped convs, an
    # average pool, a general max pool, a conv with a non-square kernel, per-side padding,
    # two strides and a dilation, a global average pool: outputs equal golden, every layer
    # counter the model
    from hwq.layout.compiler import core_config
    from hwq.testing import random_graph_network

    rng = np.random.default_rng(11)
    net = random_graph_network(rng, kind=kind, bits=[2, 3, 4], per_channel_bits=True,
                               input_shape=(3, 9, 9), blocks=["res", "maxpool", "dw",
                                                              "res_proj", "avgpool",
                                                              "grouped", "odd_conv"])
    config = core_config(net, pe=pe, lanes=lanes, simd=simd)
    program = compile_network(net, config)
    x = random_inputs(rng, net, 3)
    sim = on_both_backends(program, x)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    np.testing.assert_array_equal(sim.layer_cycles,
                                  np.broadcast_to(sim.model_layer_cycles, sim.layer_cycles.shape))
    assert sim.cycle_model_mismatches() == []


@pytest.mark.parametrize("pe, kind", [("shift_add", "pot"), ("bit_serial", "int")])
def test_general_max_pools_on_the_core(pe, kind):
    # the ResNet stem's 3x3/2 pad 1, a 3x2 window with strides (1, 2), a 1x3 window: the
    # padding never wins, even where every input is negative
    from hwq.ir import MaxPool2d, QuantizedNetwork

    rng = np.random.default_rng(5)
    conv = random_network(rng, input_shape=(3, 9, 10), arch=(("conv", 6, 3, 1, 1, False),),
                          kind=kind, bits=[3, 4]).ops[0]
    ops = [conv, MaxPool2d(name="stem", kernel=3, stride=2, padding=1),
           MaxPool2d(name="p32", kernel=(3, 2), stride=(1, 2), padding=(1, 0)),
           MaxPool2d(name="p13", kernel=(1, 3), stride=1, padding=(0, 1))]
    net = QuantizedNetwork(input_shape=(3, 9, 10), act_bits=8, input_scale=1.0, ops=ops)
    config = CoreConfig(pe=pe, lanes=4, simd=4, weight_bits=4)
    program = compile_network(net, config)
    x = random_inputs(rng, net, 3)
    x[0] = -128                                   # every output of conv0 its low bound
    sim = on_both_backends(program, x)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    assert sim.cycle_model_mismatches() == []


FUSION_CASES = [
    # pe, weight format, lanes, simd: lanes = simd, lanes > simd, lanes < simd
    ("shift_add", "pot", 4, 4),
    ("bit_serial", "int", 4, 2),
    ("multiply", "codebook", 2, 4),
]


@pytest.mark.parametrize("pe, kind, lanes, simd", FUSION_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}x{c[3]}" for c in FUSION_CASES])
def test_fused_and_standalone_max_pools_on_the_core(pe, kind, lanes, simd):
    # pools in the write-back of a conv and of an add (windows that leave positions out),
    # beside pools that must stay passes of their own (input read twice, overlapping
    # windows, padding); an all-negative image makes conv0's outputs (no ReLU) negative
    from hwq.layout.compiler import core_config
    from hwq.testing import pool_fusion_network

    rng = np.random.default_rng(13)
    net = pool_fusion_network(rng, kind=kind, bits=[2, 3, 4], per_channel_bits=True)
    config = core_config(net, pe=pe, lanes=lanes, simd=simd)
    program = compile_network(net, config)
    assert [layer.get("fused") for layer in program.layers if "fused" in layer] == [
        "pool1", "pool4"]
    assert sum(layer["kind"] == "pool" for layer in program.layers) == 3
    x = random_inputs(rng, net, 3)
    x[0] = -128
    sim = on_both_backends(program, x)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    np.testing.assert_array_equal(sim.layer_cycles,
                                  np.broadcast_to(sim.model_layer_cycles, sim.layer_cycles.shape))
    assert sim.cycle_model_mismatches() == []


def test_digits_with_fused_pools_on_the_core():
    # the digits CNN on an 8x8 shift_add core fitted to it: both pools in the convs'
    # write-back, a 4-word buffer (32 channels), 2 pool passes fewer than without it
    from hwq.layout.compiler import core_config

    rng = np.random.default_rng(7)
    net = random_network(rng, kind="pot", bits=[3, 4], input_shape=(1, 8, 8),
                         arch=DIGITS_ARCH)
    config = core_config(net, pe="shift_add", lanes=8, simd=8)
    assert config.pool_words == 4
    program = compile_network(net, config)
    alone = compile_network(net, core_config(net, pe="shift_add", lanes=8, simd=8,
                                             pool_words=0))
    assert len(alone.layers) == len(program.layers) + 2
    assert program.cycles() < alone.cycles()
    x = random_inputs(rng, net, 3)
    sim = simulate(program, None, x, backend="compiled", jobs=1, progress=False)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    np.testing.assert_array_equal(sim.cycles, np.full(3, program.cycles()))
    assert sim.cycle_model_mismatches() == []


def test_codebook_whose_zero_is_not_entry_0_on_the_core():
    # the compiler pads the 1-tile group to 2 micro-ops (lanes 2, simd 1): the padding must
    # carry the zero's index (1), or the core adds 5 * x a second time
    from tests.layout.test_compiler import zero_last_codebook_network

    net = zero_last_codebook_network()
    program = compile_network(net, CoreConfig(pe="multiply", lanes=2, simd=1, weight_bits=2))
    x = np.array([[7], [-3], [0], [127], [-128]])
    sim = on_both_backends(program, x)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    assert sim.cycle_model_mismatches() == []


@pytest.mark.sim
def test_a_requant_product_beyond_64_bits_on_the_core():
    # 48-bit accumulators, 24-bit M: golden, the executor and the core give the same values
    from hwq.layout import execute
    from tests.layout.test_executor import wide_requant_inputs, wide_requant_network

    net, config = wide_requant_network()
    program = compile_network(net, config)
    x = wide_requant_inputs()
    want = golden.run(net, x)
    np.testing.assert_array_equal(execute(program, x), want)
    sim = simulate(program, None, x, progress=False)
    np.testing.assert_array_equal(sim.outputs, want)
    assert sim.cycle_model_mismatches() == []
    assert sim.free_run_cycles_per_s is None  # the speed check is opt-in


def _hwq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwq.cli", *args], capture_output=True,
                          text=True, timeout=900)


def test_flow_cli_bit_for_bit():
    proc = _hwq("flow", "--limit", "12", "--json", "--no-progress", "--free-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert report["mismatches"] == 0
    assert report["outputs_compared"] == 12 * 10
    assert report["sim_accuracy"] == report["golden_accuracy"]
    assert report["cycle_model_mismatches"] == []
    assert report["layer_cycles"] == report["model_layer_cycles"]
    assert report["cycles_per_inference"] == report["model_cycles_per_inference"]
    assert report["backend"] == "compiled"
    assert 0 < report["utilization"] <= 1
    assert 0 < report["act_peak_words"] <= report["core"]["act_depth"]
    for key in ("fp32_accuracy", "sim_cycles_per_s", "free_run_cycles_per_s"):
        assert report[key] > 0


def test_flow_on_a_saved_network_checks_its_workload(tmp_path):
    rng = np.random.default_rng(4)
    net = random_network(rng, kind="pot", bits=[4], input_shape=(1, 8, 8))
    path = serialize.save(net, tmp_path / "net.safetensors")
    proc = _hwq("flow", "--network", str(path), "--model", "lenet5", "--json", "--no-progress")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"] == (
        f"Network {path} takes (1, 8, 8) inputs; the lenet5 test images are (1, 28, 28) "
        "(choose --model)")
    proc = _hwq("flow", "--network", str(path), "--limit", "3", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["model"] == "digits"
    assert report["fp32_accuracy"] is None          # a saved network has no float model here


USER_MODEL = """
import numpy as np
import torch
from torch import nn


def with_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(36, 3)).eval()
    rng = np.random.default_rng(0)
    return model, {"x": rng.random((30, 2, 6, 6)).astype(np.float32),
                   "y": rng.integers(0, 3, 30)}
"""


def test_flow_cli_on_your_own_model_and_on_a_network_with_your_data(tmp_path):
    (tmp_path / "mine.py").write_text(USER_MODEL)
    spec = f"{tmp_path / 'mine.py'}:with_data"
    proc = _hwq("flow", "--model", spec, "--pe", "bit_serial", "--method", "uniform",
                "--limit", "4", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert (report["ok"], report["model"], report["images"]) == (True, spec, 4)
    assert report["mismatches"] == 0 and report["fp32_accuracy"] is not None
    # a saved network of that shape runs on the test images of an .npz
    net = random_network(np.random.default_rng(2), kind="int", bits=[4], input_shape=(2, 6, 6))
    path = serialize.save(net, tmp_path / "net.safetensors")
    x = np.random.default_rng(4).random((5, 2, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.zeros(5, np.int64), x_test=x,
             y_test=np.arange(5) % 2)
    proc = _hwq("flow", "--network", str(path), "--data", str(tmp_path / "d.npz"), "--pe",
                "bit_serial", "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert (report["ok"], report["images"], report["mismatches"]) == (True, 5, 0)
    expected = golden.run(net, golden.quantize_input(x, net.input_scale, net.act_bits))
    assert report["golden_accuracy"] == float(
        (expected.argmax(axis=1) == np.arange(5) % 2).mean() * 100)


def test_sim_cli_on_a_saved_network(tmp_path):
    rng = np.random.default_rng(3)
    net = random_network(rng, kind="pot", bits=[4], input_shape=(3, 8, 8))
    path = serialize.save(net, tmp_path / "net.safetensors")
    proc = _hwq("sim", str(path), "--inputs", "random", "--limit", "3", "--jobs", "2",
                "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["mismatches"] == 0 and report["cycle_model_mismatches"] == []
    assert (report["backend"], report["jobs"]) == ("compiled", 2)
    assert report["core"]["pe"] == "shift_add"
    assert report["free_run_cycles_per_s"] is None  # no --free-run
    x = np.random.default_rng(0).integers(-128, 128, size=(3, 3, 8, 8))
    assert report["outputs"] == golden.run(net, x).tolist()


def test_sim_cli_runs_the_images_and_labels_of_a_npz_file(tmp_path):
    rng = np.random.default_rng(3)
    net = random_network(rng, kind="pot", bits=[4], input_shape=(3, 8, 8))
    path = serialize.save(net, tmp_path / "net.safetensors")
    x = np.random.default_rng(5).normal(size=(4, 3, 8, 8)).astype(np.float32)
    expected = golden.run(net, golden.quantize_input(x, net.input_scale, net.act_bits))
    y = np.array([expected[0].argmax(), 0, 1, expected[3].argmax()])  # 2 or more right
    np.savez(tmp_path / "mine.npz", x_test=x, y_test=y, x_train=x, y_train=y)
    proc = _hwq("sim", str(path), "--inputs", str(tmp_path / "mine.npz"), "--json",
                "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["inputs"] == 4 and report["mismatches"] == 0
    assert report["outputs"] == expected.tolist()
    assert report["accuracy"] == float((expected.argmax(axis=1) == y).mean() * 100)


@pytest.mark.parametrize("args, message", [
    (("sim", "/nonexistent.safetensors"), "No network file at /nonexistent.safetensors"),
    (("flow", "--limit", "0"), "argument --limit: must be an integer >= 1, not '0'"),
    (("flow", "--limit", "541"), "--limit must be in 1..540, not 541"),
    (("flow", "--pe", "fpu"), "invalid choice: 'fpu'"),
])
def test_cli_bad_usage(args, message):
    proc = _hwq(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, backend, jobs", [
    ((), "compiled", None),
    (("--backend", "cocotb"), "cocotb", None),
    (("--jobs", "3"), "compiled", 3),
])
def test_sim_cli_passes_backend_and_jobs(args, backend, jobs, tmp_path, monkeypatch, capsys):
    from hwq.cli import main
    from hwq.layout.executor import execute

    net = random_network(np.random.default_rng(3), kind="pot", bits=[4], input_shape=(3, 8, 8))
    path = serialize.save(net, tmp_path / "net.safetensors")
    seen = []

    def fake(program, config, x, **kwargs):
        seen.append(kwargs)
        n, layers = len(x), len(program.layers)
        model = np.array([int(layer["cycles"]) for layer in program.layers])
        return SimResult(
            outputs=execute(program, x), cycles=np.full(n, program.cycles()),
            layer_cycles=np.broadcast_to(model, (n, layers)), model_layer_cycles=model,
            layer_names=[str(layer["name"]) for layer in program.layers], build_seconds=0.0,
            build_cached=True, load_seconds=0.0, infer_seconds=1.0, infer_cycles=1000,
            free_run_cycles_per_s=1000.0, verilog_lines=0, backend=kwargs["backend"],
            jobs=kwargs["jobs"] or 1)

    import importlib

    import hwq.sim

    monkeypatch.setattr(hwq.sim, "simulate", fake)   # the package's re-export and the module's
    monkeypatch.setattr(importlib.import_module("hwq.sim.simulate"), "simulate", fake)
    assert main(["sim", str(path), "--inputs", "random", "--limit", "2", "--json",
                 "--no-progress", *args]) == 0
    assert [(k["backend"], k["jobs"]) for k in seen] == [(backend, jobs)]
    assert json.loads(capsys.readouterr().out)["backend"] == backend
