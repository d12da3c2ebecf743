# amaranth: UnusedElaboratable=no
# (a component whose constructor refuses its arguments is never elaborated)
"""``CoreConfig.dsp``: multipliers inferred or as ECP5 MULT18X18D blocks with their registers.

The arithmetic of the ``ecp5`` variant is checked bit for bit on Verilator with hwq's model
of the block (tests/sim: the MAC array, the requant and a whole core); here: what is
generated, the model's lint, and the clear errors.
"""

from __future__ import annotations

import json
import re

import pytest
from amaranth.hdl import Module, Signal, signed, unsigned

from hwq.cli import main
from hwq.config import CoreConfig
from hwq.layout.compiler import compile as compile_network
from hwq.rtl import report
from hwq.rtl.dsp import MODEL_FILE, registered_product, sim_models
from hwq.rtl.generate import generate
from hwq.rtl.lint import lint
from hwq.rtl.pe import MultiplyPairPE, pair_shift
from hwq.rtl.simulation import simulate_core
from hwq.testing import random_network

SMALL = dict(lanes=2, simd=4, act_depth=64, weight_depth=64, param_depth=64, desc_depth=4)
INSTANCE = re.compile(r"^\s*MULT18X18D #\(", re.M)


@pytest.mark.parametrize(("pe", "table_bits", "blocks"), [
    # requant: 2 chunks of t times 2 of M per lane; multiply PEs: one per lane and input
    ("shift_add", 8, 2 * 4), ("bit_serial", 8, 2 * 4), ("multiply", 8, 2 * 4 + 2 * 4),
    # 4-bit values: the two lanes share one block per input (MultiplyPairPE)
    ("multiply", 4, 2 * 4 + 4)])
def test_ecp5_instantiates_one_block_per_multiplier(pe, table_bits, blocks):
    verilog = generate(CoreConfig(pe=pe, dsp="ecp5", table_bits=table_bits, **SMALL))
    assert len(INSTANCE.findall(verilog)) == blocks
    for reg in ("INPUTA", "INPUTB", "OUTPUT"):
        assert verilog.count(f'.REG_{reg}_CLK("CLK0")') == blocks
    assert "MULT18X18D" not in generate(CoreConfig(pe=pe, table_bits=table_bits, **SMALL))


def test_sim_models_only_when_instantiated():
    assert sim_models("module top; endmodule") == {}
    models = sim_models(generate(CoreConfig(pe="multiply", dsp="ecp5", **SMALL)))
    assert list(models) == [MODEL_FILE]
    assert "module MULT18X18D" in models[MODEL_FILE]


@pytest.mark.sim
def test_ecp5_core_and_model_lint_clean(tmp_path, capsys):
    code = main(["rtl", "--pe", "multiply", "--lanes", "2", "--simd", "4", "--dsp", "ecp5",
                 "-o", str(tmp_path), "--lint", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["lint"]["ok"] and out["lint"]["warnings"] == []
    assert (tmp_path / MODEL_FILE).is_file()          # linted with the design
    bare = lint(tmp_path / "hwq_core.v", waivers=True)
    assert bare["ok"]


def test_operands_too_wide_for_the_block():
    m = Module()
    a, b = signed(19), unsigned(8)
    with pytest.raises(ValueError, match=r"operand a of 'p'.*does not fit a 18-bit signed"):
        registered_product(m, Signal(a), Signal(b), 1, name="p", dsp="ecp5")
    with pytest.raises(ValueError, match=r"operand b of 'q'.*unsigned\(18\)"):
        registered_product(m, Signal(b), Signal(unsigned(18)), 1, name="q", dsp="ecp5")
    with pytest.raises(ValueError, match="DSP kind must be one of inferred, ecp5, not 'dsp48'"):
        registered_product(m, Signal(b), Signal(b), 1, name="r", dsp="dsp48")
    m._MustUse__silence = True  # only the errors were wanted, nothing to elaborate


def test_config_field_and_fingerprint():
    with pytest.raises(ValueError, match="DSP kind must be one of inferred, ecp5, not 'xilinx'"):
        CoreConfig(pe="multiply", dsp="xilinx")
    a, b = CoreConfig(pe="multiply"), CoreConfig(pe="multiply", dsp="ecp5")
    assert a.fingerprint() == b.fingerprint()        # programs run on either
    assert b.to_dict()["dsp"] == "ecp5"
    assert CoreConfig.from_dict({"pe": "multiply"}).dsp == "inferred"


def test_python_simulator_refuses_vendor_blocks():
    import numpy as np
    rng = np.random.default_rng(0)
    net = random_network(rng, kind="int", bits=[4], input_shape=(2, 4, 4))
    program = compile_network(net, CoreConfig(pe="multiply", dsp="ecp5",
                                              **{**SMALL, "weight_depth": 1024}))
    x = np.zeros((1, *net.input_shape), dtype=np.int64)
    with pytest.raises(ValueError, match="Python simulator cannot run dsp='ecp5'"):
        simulate_core(program, x)


@pytest.mark.parametrize(("target", "dsp", "words"), [
    ("ice40", True, "on target ecp5 with DSPs, not ice40"),
    ("ecp5", False, "not ecp5 without DSPs"),
])
def test_report_refuses_blocks_the_target_cannot_take(target, dsp, words):
    with pytest.raises(ValueError, match=words):
        report.report(CoreConfig(pe="multiply", dsp="ecp5", **SMALL), target=target, dsp=dsp,
                      progress=None, cache=False)


def test_pair_shift_packs_two_products_only_when_they_fit():
    # a * w needs act_bits + value_bits signed bits; w1 + w2 * 2**k must fit 18 signed bits
    assert pair_shift(8, 4) == 12
    assert pair_shift(8, 5) is None          # 8 + 5 + 5 + 1 = 19 bits
    assert pair_shift(4, 6) == 10
    assert pair_shift(2, 2) == 4
    with pytest.raises(ValueError, match=r"Two 5-bit weights and a 8-bit activation \(packed: "
                                         r"act \+ 2 \* weight \+ 1 bits\) do not fit one "
                                         "18x18 DSP multiplier"):
        MultiplyPairPE(simd=4, act_bits=8, value_bits=5)
