"""Block-level cocotb testbenches on Verilator: the MAC array per PE type and weight format,
and the requant block, with constrained-random stimulus, random input stalls and output
back-pressure, a model from hwq.golden and an in-order exact scoreboard.

Each DUT variant is converted to Verilog and built once per session (cached by content hash
in the test cache); each pytest entry runs one testbench module on one build with one
parameter set, checks the cocotb results and reads back the transaction counts each cocotb
test wrote, so a run that checked nothing cannot pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hwq.config import CoreConfig
from hwq.sim import tb_array, tb_requant
from hwq.sim.build import TestResult, VerilatorBuild
from hwq.sim.tb_common import COUNTS_FILE, TRAFFIC, build_component, run_testbench

pytestmark = pytest.mark.sim

#: cocotb's random seed for every run (the stimulus is a function of it and the test name).
SEED = 2026
#: Wall-clock limit of one simulator run, in seconds.
RUN_TIMEOUT = 120.0
GROUPS = 40
BEATS = 60

ARRAYS = {
    pe: CoreConfig(pe=pe, lanes=4, simd=4, act_bits=8, weight_bits=4, acc_bits=24)
    for pe in ("shift_add", "bit_serial", "multiply")
}
# the multipliers as ECP5 MULT18X18D blocks with their own registers (hwq.rtl.dsp's model)
ARRAYS["multiply-ecp5"] = CoreConfig(pe="multiply", lanes=4, simd=4, act_bits=8,
                                     weight_bits=4, acc_bits=24, dsp="ecp5")
# 4-bit values: two lanes per set of blocks (MultiplyPairPE), the third lane on its own
ARRAYS["multiply-ecp5-pairs"] = CoreConfig(pe="multiply", lanes=3, simd=3, act_bits=8,
                                           weight_bits=4, table_bits=4, acc_bits=24,
                                           dsp="ecp5")
REQUANTS = {
    # the default accumulator: shifts up to 62 need a rounding constant wider than the product
    "acc32": CoreConfig(pe="multiply", lanes=4, simd=4, act_bits=8, acc_bits=32),
    "acc32-ecp5": CoreConfig(pe="multiply", lanes=4, simd=4, act_bits=8, acc_bits=32,
                             dsp="ecp5"),
}
ARRAY_CASES = [(variant, fmt) for variant, cfg in ARRAYS.items()
               for fmt in tb_array.FORMATS[cfg.pe]]


def array_params(variant: str, fmt: str) -> dict[str, Any]:
    return tb_array.array_params(ARRAYS[variant], fmt, groups=GROUPS)


def requant_params(name: str) -> dict[str, Any]:
    return tb_requant.requant_params(REQUANTS[name], beats=BEATS)


@pytest.fixture(scope="session")
def block_build(sim_cache_dir: Path) -> Callable[[str, str], VerilatorBuild]:
    """``block_build(block, variant)``: the Verilator build of a DUT, made once per session."""
    builds: dict[tuple[str, str], VerilatorBuild] = {}

    def get(block: str, variant: str) -> VerilatorBuild:
        if (block, variant) not in builds:
            if block == "mac_array":
                # the build depends on the config alone, not on the weight format
                fmt = tb_array.FORMATS[ARRAYS[variant].pe][0]
                component = tb_array.make_component(array_params(variant, fmt))
            else:
                component = tb_requant.make_component(requant_params(variant))
            builds[block, variant] = build_component(component, block, cache_dir=sim_cache_dir)
        return builds[block, variant]

    return get


def read_counts(folder: Path) -> list[dict[str, Any]]:
    """The per-test transaction counts the testbench wrote into the run folder."""
    lines = (folder / COUNTS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_all_checked(result: TestResult, names: list[str], sent: int) -> None:
    """Every cocotb test passed, and each scoreboarded exactly the ``sent`` transactions."""
    result.check()
    assert (result.tests, result.failed) == (len(names), 0)
    counts = read_counts(result.test_dir)
    assert [c["test"] for c in counts] == names
    for c in counts:
        assert c["sent"] == c["observed"] == c["matched"] == sent, c


@pytest.mark.parametrize(("pe", "fmt"), ARRAY_CASES, ids=[f"{p}-{f}" for p, f in ARRAY_CASES])
def test_mac_array(block_build: Callable[[str, str], VerilatorBuild], tmp_path: Path,
                   pe: str, fmt: str) -> None:
    result = run_testbench(block_build("mac_array", pe), "hwq.sim.tb_array",
                           array_params(pe, fmt), seed=SEED, timeout=RUN_TIMEOUT,
                           test_dir=tmp_path / "run")
    assert_all_checked(result, [f"mac_array/traffic={t}" for t in TRAFFIC], GROUPS)
    for c in read_counts(result.test_dir):
        assert c["taken"] == c["beats"], c
        if c["test"].endswith("=smooth"):
            assert c["stall_cycles"] == 0, c
    if ARRAYS[pe].pe == "bit_serial":  # one beat per tile and plane: INT(4) or 8-bit entries
        planes = 4 if fmt == "int" else ARRAYS[pe].table_bits
        assert all(c["beats"] % planes == 0 for c in read_counts(result.test_dir))


@pytest.mark.parametrize("variant", list(REQUANTS))
def test_requant(block_build: Callable[[str, str], VerilatorBuild], tmp_path: Path,
                 variant: str) -> None:
    result = run_testbench(block_build("requant", variant), "hwq.sim.tb_requant",
                           requant_params(variant), seed=SEED, timeout=RUN_TIMEOUT,
                           test_dir=tmp_path / "run")
    names = [f"requant/clamp={c}/traffic={t}" for c in tb_requant.CLAMPS for t in TRAFFIC]
    assert_all_checked(result, names, BEATS)


MISMATCH = re.compile(
    r"(?P<test>\S+): scoreboard mismatch at transaction 2: "
    r"expected (?P<field>acc|y)=\[(?P<want>-?\d+)(?P<rest>[^\]]*)\] side=2, "
    r"got (?P=field)=\[(?P<got>-?\d+)(?P=rest)\] side=2; (?P<matched>\d+) of (?P<sent>\d+) matched"
)


def assert_broken_golden_caught(result: TestResult, names: list[str], sent: int) -> None:
    """Every test failed on transaction 2 alone, lane 0 expected one more than observed."""
    assert result.error is None, result.summary()
    assert (result.tests, result.failed) == (len(names), len(names))
    assert [f.split(":")[0] for f in result.failures] == names
    for failure in result.failures:
        match = MISMATCH.fullmatch(failure)
        assert match is not None, failure
        assert int(match["want"]) == int(match["got"]) + 1, failure
        assert (int(match["matched"]), int(match["sent"])) == (sent - 1, sent), failure


def test_mac_array_fails_on_a_broken_golden(
        block_build: Callable[[str, str], VerilatorBuild], tmp_path: Path) -> None:
    """HWQ_TB_BREAK_GOLDEN=1 perturbs one expected value by +1: the scoreboard must catch it."""
    result = run_testbench(block_build("mac_array", "shift_add"), "hwq.sim.tb_array",
                           array_params("shift_add", "pot"), break_golden=True, seed=SEED,
                           timeout=RUN_TIMEOUT, test_dir=tmp_path / "run")
    assert_broken_golden_caught(result, [f"mac_array/traffic={t}" for t in TRAFFIC], GROUPS)
    print("\n".join(result.failures))


def test_requant_fails_on_a_broken_golden(
        block_build: Callable[[str, str], VerilatorBuild], tmp_path: Path) -> None:
    result = run_testbench(block_build("requant", "acc32"), "hwq.sim.tb_requant",
                           requant_params("acc32"), break_golden=True, seed=SEED,
                           timeout=RUN_TIMEOUT, test_dir=tmp_path / "run")
    names = [f"requant/clamp={c}/traffic={t}" for c in tb_requant.CLAMPS for t in TRAFFIC]
    assert_broken_golden_caught(result, names, BEATS)
