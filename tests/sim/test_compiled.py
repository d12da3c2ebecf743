"""The compiled backend: the C++ harness as a host Device, worker processes, waveforms.

Outputs and counters of the compiled backend against cocotb's are checked in
``test_core_sim.py``; here: the Device contract, parallel batches (input order, a dying
worker), traces, argument checks.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import numpy as np
import pytest

from hwq import golden
from hwq.config import CoreConfig
from hwq.host.device import DeviceTimeout
from hwq.host.runtime import Runtime
from hwq.layout import regmap
from hwq.layout.compiler import compile as compile_network
from hwq.rtl.generate import cached_generate
from hwq.sim import compiled, harness
from hwq.sim.simulate import _write_sources, default_jobs, simulate
from hwq.testing import random_inputs, random_network

#: The first core of test_core_sim's CASES: its build is shared with those tests.
CONFIG = CoreConfig(pe="shift_add", lanes=8, simd=8, weight_bits=4)
#: A small core for the traced builds.
TINY = CoreConfig(pe="shift_add", lanes=2, simd=2, weight_bits=4, act_depth=256,
                  weight_depth=256, param_depth=32, desc_depth=8)


def _network(seed=3):
    return random_network(np.random.default_rng(seed), kind="pot", bits=[3, 4],
                          per_channel_bits=True, input_shape=(3, 8, 8))


@pytest.fixture(scope="module")
def library(tmp_path_factory, sim_cache_dir):
    folder = tmp_path_factory.mktemp("src")
    verilog = cached_generate(CONFIG, cache_dir=sim_cache_dir)
    return compiled.build(_write_sources(verilog, folder), cache_dir=sim_cache_dir).library


def test_the_device_identifies_loads_runs_and_times_out(library):
    net = _network()
    program = compile_network(net, CONFIG)
    x = random_inputs(np.random.default_rng(0), net, 3)
    model = compiled.CompiledModel(library)
    device = compiled.CompiledDevice(model)

    async def session():
        ident = await device.identify()
        runtime = Runtime(device)
        await runtime.load(program)
        result = await runtime.infer(x)
        await device.write_reg(regmap.ADDR.CTRL, regmap.BIT.CTRL_CLEAR_DONE)
        start = model.cycle
        with pytest.raises(DeviceTimeout, match="did not raise DONE within 50 cycles"):
            await device.wait_done(timeout_s=1.0, timeout_cycles=50)  # idle, DONE cleared
        waited = model.cycle - start
        await device.write_reg(regmap.ADDR.LAYER_SEL, 3)
        layer_sel = await device.read_reg(regmap.ADDR.LAYER_SEL)
        with pytest.raises(ValueError, match="multiple of 4"):
            await device.read_reg(0x3)
        with pytest.raises(ValueError, match="not 0xfc \\(unmapped\\)"):  # the core: SLVERR
            await device.read_reg(0xFC)
        await device.close()
        return ident, result, waited, layer_sel

    ident, result, waited, layer_sel = asyncio.run(session())
    assert (ident.core_id, ident.fingerprint) == (regmap.CORE_ID, CONFIG.fingerprint())
    np.testing.assert_array_equal(result.outputs, golden.run(net, x))
    np.testing.assert_array_equal(result.cycles, np.full(3, program.cycles()))
    assert waited == 50 and layer_sel == 3
    with pytest.raises(RuntimeError, match="The compiled model is closed"):
        model.read(regmap.ADDR.ID)


def test_jobs_split_the_inputs_and_keep_their_order(library):
    net = _network()
    program = compile_network(net, CONFIG)
    x = random_inputs(np.random.default_rng(1), net, 7)
    one = simulate(program, None, x, jobs=1, progress=False)
    three = simulate(program, None, x, jobs=3, progress=False)
    np.testing.assert_array_equal(three.outputs, golden.run(net, x))
    np.testing.assert_array_equal(three.outputs, one.outputs)
    np.testing.assert_array_equal(three.layer_cycles, one.layer_cycles)
    assert (one.jobs, three.jobs) == (1, 3)
    assert [w["images"] for w in three.extra["workers"]] == [[0, 2], [2, 5], [5, 7]]
    assert three.infer_cycles == one.infer_cycles  # the same transactions per image
    assert three.extra["load_cycles"] == one.extra["load_cycles"]


def test_a_worker_killed_by_a_signal_fails_the_batch_naming_its_images(library, monkeypatch):
    net = _network()
    program = compile_network(net, CONFIG)
    x = random_inputs(np.random.default_rng(2), net, 6)
    popen = subprocess.Popen
    started = []

    def kill_the_second(args, **kwargs):
        proc = popen(args, **kwargs)
        started.append(proc)
        if len(started) == 2:
            proc.kill()
        return proc

    monkeypatch.setattr(subprocess, "Popen", kill_the_second)
    with pytest.raises(harness.WorkerFailed) as info:
        harness.run_parallel(library, program, x, 2)
    assert str(info.value).startswith("Simulation worker 2 of 2 (images 3..5) was killed by "
                                      "SIGKILL; no results for the batch")
    assert all(p.returncode is not None for p in started)  # none left running


def test_a_worker_that_fails_gives_its_error(tmp_path):
    net = _network()
    program = compile_network(net, CONFIG)
    x = random_inputs(np.random.default_rng(2), net, 3)
    with pytest.raises(harness.WorkerFailed) as info:
        harness.run_parallel(tmp_path / "missing.so", program, x, 1)
    message = str(info.value)
    assert message.startswith("Simulation worker 1 of 1 (images 0..2) exited with code 1; "
                              "no results for the batch: OSError: ")
    assert "missing.so" in message


@pytest.mark.parametrize("backend", ["compiled", "cocotb"])
def test_waves_on_both_backends(backend):
    net = random_network(np.random.default_rng(4), kind="pot", bits=4, input_shape=(2, 4, 4),
                         arch=(("conv", 3, 3, 1, 1, True),))
    program = compile_network(net, TINY)
    x = random_inputs(np.random.default_rng(4), net, 2)
    sim = simulate(program, None, x, backend=backend, waves="vcd", progress=False)
    np.testing.assert_array_equal(sim.outputs, golden.run(net, x))
    text = open(sim.waves_file).read()
    assert sim.waves_file.endswith(".vcd") and "$enddefinitions" in text
    irq = re.search(r"\$var wire\s+1 (\S+) irq \$end", text).group(1)
    # DONE raised the interrupt once per image, and the host cleared it with START
    assert len(re.findall(rf"^1{re.escape(irq)}$", text, re.M)) == 2


def test_a_library_without_tracing_refuses_waves(library, tmp_path):
    with pytest.raises(ValueError, match="Waves need a library built with waves"):
        compiled.CompiledModel(library, waves=tmp_path / "x.vcd")


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "iverilog"}, "Backend must be one of compiled, cocotb, not 'iverilog'"),
    ({"jobs": 0}, "Jobs must be a positive integer, not 0"),
    ({"jobs": 2, "backend": "cocotb"}, "Jobs > 1 needs the compiled backend, not 'cocotb'"),
    ({"jobs": 2, "waves": "vcd"}, "Waves record one process: use jobs=1, not jobs=2"),
])
def test_bad_arguments_are_refused_before_any_work(kwargs, message, monkeypatch):
    monkeypatch.setattr("hwq.rtl.generate.cached_generate", None)  # never reached
    net = _network()
    with pytest.raises(ValueError, match=re.escape(message)):
        simulate(net, CONFIG, random_inputs(np.random.default_rng(0), net, 2), **kwargs)


def test_default_jobs_follow_the_cpus_and_the_batch(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert default_jobs(540, 8528) == 4       # 4.6 M cycles: every CPU
    assert default_jobs(540, 3000) == 1       # 1.6 M cycles: one more would not pay
    assert default_jobs(300, 8528) == 2
    assert default_jobs(3, 10_000_000) == 3   # at most one per image


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "argument --jobs: must be an integer >= 1, not '0'"),
    (["--backend", "verilog"], "argument --backend: invalid choice: 'verilog'"),
    (["--backend", "cocotb", "--jobs", "2"],   # refused before quantizing
     "hwq flow: error: Jobs > 1 needs the compiled backend, not 'cocotb' (jobs=2)"),
])
def test_cli_refuses_bad_jobs_and_backend(args, message):
    proc = subprocess.run([sys.executable, "-m", "hwq.cli", "flow", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
