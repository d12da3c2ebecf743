"""Toggle counts of the compiled harness (``--coverage-toggle``) against a count made
independently: the value changes of the same run's VCD waveform."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from hwq.config import CoreConfig
from hwq.host.runtime import Runtime
from hwq.layout.compiler import compile as compile_network
from hwq.rtl.generate import cached_generate
from hwq.sim import activity, compiled
from hwq.sim.simulate import _write_sources
from hwq.testing import random_inputs, random_network

TINY = CoreConfig(pe="shift_add", lanes=2, simd=2, weight_bits=4, act_depth=256,
                  weight_depth=256, param_depth=32, desc_depth=8)
#: Registers whose every bit is compared (the MAC array's accumulators, the cycle counter).
REGISTERS = ("mac.acc0", "mac.acc1", "cycles")

COVERAGE = (  # two points per bit, as Verilator 5 writes them
    "# SystemC::Coverage-3\n"
    "C '\x01f\x02a.v\x01l\x021\x01page\x02v_toggle/m\x01o\x02x__02ey[1]:0->1\x01h\x02TOP.m' 3\n"
    "C '\x01f\x02a.v\x01l\x021\x01page\x02v_toggle/m\x01o\x02x__02ey[1]:1->0\x01h\x02TOP.m' 2\n"
    "C '\x01f\x02a.v\x01l\x022\x01page\x02v_line/m\x01o\x02block\x01h\x02TOP.m' 9\n"
    "C '\x01f\x02a.v\x01l\x023\x01page\x02v_toggle/m\x01o\x02z:0->1\x01h\x02TOP.m' 0\n")


def test_read_coverage_sums_both_directions_and_decodes_names():
    assert activity.read_coverage(COVERAGE) == {"TOP.m.x.y[1]": 5, "TOP.m.z": 0}


def _vcd_changes(path, names: tuple[str, ...], t0: int, t1: int) -> dict[str, int]:
    """Bit changes of the ``names`` variables of scope ``TOP.hwq_core`` at times in
    ``(t0, t1]``, read from the VCD text with a parser of our own."""
    ids: dict[str, tuple[str, int]] = {}
    scope: list[str] = []
    last: dict[str, str] = {}
    counts: dict[str, int] = {}
    now = 0
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("$scope"):
                scope.append(line.split()[2])
            elif line.startswith("$upscope"):
                scope.pop()
            elif line.startswith("$var"):
                _, _, width, ident, name, *_ = line.split()
                if scope == ["TOP", "hwq_core"] and name in names:
                    ids[ident] = (name, int(width))
            elif line.startswith("#"):
                now = int(line[1:])
            elif line[0] in "b01xz":
                value, ident = (line[1:].split() if line[0] == "b"
                                else (line[0], line[1:].strip()))
                if ident not in ids:
                    continue
                name, width = ids[ident]
                value = value.zfill(width)
                old = last.get(ident)
                last[ident] = value
                if old is None or not t0 < now <= t1:
                    continue
                for i in range(width):
                    if old[width - 1 - i] != value[width - 1 - i]:
                        key = f"{name}[{i}]" if width > 1 else name
                        counts[key] = counts.get(key, 0) + 1
    assert {n for n, _ in ids.values()} == set(names)
    return counts


def test_toggle_counts_equal_the_value_changes_of_a_vcd(tmp_path):
    net = random_network(np.random.default_rng(3), kind="pot", bits=[3, 4],
                         per_channel_bits=True, input_shape=(3, 6, 6))
    program = compile_network(net, TINY)
    x = random_inputs(np.random.default_rng(0), net, 2)
    measured = activity.measure_toggles(program, x)
    assert (measured["cached"], measured["images"]) == (False, 2)
    again = activity.measure_toggles(program, x)
    assert again["cached"] and again["toggles"] == measured["toggles"]

    build = compiled.build(_write_sources(cached_generate(TINY), tmp_path), waves="vcd")
    model = compiled.CompiledModel(build.library, waves=tmp_path / "run.vcd")
    runtime = Runtime(compiled.CompiledDevice(model))
    asyncio.run(runtime.load(program))
    c0 = model.cycle
    result = asyncio.run(runtime.infer(x))
    c1 = model.cycle
    with pytest.raises(ValueError, match="Toggle counts need a library built with toggles"):
        model.coverage()  # this build counts none
    model.close()
    assert c1 - c0 == measured["cycles"]
    assert int(result.cycles.sum()) == measured["compute_cycles"]
    # the trace is dumped every half period of 5 ns: cycle c ends at 10 c ns
    changes = _vcd_changes(tmp_path / "run.vcd", REGISTERS, 10 * c0, 10 * c1)
    counted = {k[len(activity.ROOT) + 1:]: v for k, v in measured["toggles"].items()
               if re.fullmatch(rf"{activity.ROOT}\.({'|'.join(REGISTERS)})(\[\d+\])?", k)}
    assert len(counted) == 2 * TINY.acc_bits + 32  # every bit counted, 0 or not
    assert {k: v for k, v in counted.items() if v} == changes
    assert sum(changes.values()) > 100  # the run exercises them
