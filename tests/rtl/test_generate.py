"""Verilog generation, the `hwq rtl` command and Verilator lint (-Wall, documented waivers)."""

import json
import re

import numpy as np
import pytest

from hwq.cli import main
from hwq.config import CoreConfig
from hwq.layout import compile
from hwq.rtl.generate import generate, write
from hwq.rtl.lint import WAIVERS, lint, waiver_file
from hwq.testing import random_network

PORTS = ["s_axil__awaddr", "s_axil__awvalid", "s_axil__awready", "s_axil__wdata",
         "s_axil__wstrb", "s_axil__wvalid", "s_axil__wready", "s_axil__bresp", "s_axil__bvalid",
         "s_axil__bready", "s_axil__araddr", "s_axil__arvalid", "s_axil__arready",
         "s_axil__rdata", "s_axil__rresp", "s_axil__rvalid", "s_axil__rready",
         "s_axis__tdata", "s_axis__tvalid", "s_axis__tready", "irq", "clk", "rst"]


@pytest.mark.sim
@pytest.mark.parametrize("pe", ["shift_add", "bit_serial", "multiply"])
def test_cli_writes_verilog_that_lints_clean(pe, tmp_path, capsys):
    code = main(["rtl", "--pe", pe, "--lanes", "4", "--simd", "8", "-o", str(tmp_path),
                 "--lint", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] and out["lint"]["ok"], out.get("lint")
    assert out["lint"]["warnings"] == []
    verilog = (tmp_path / "hwq_core.v").read_text()
    header = re.search(r"module hwq_core\((.*?)\);", verilog, re.S).group(1)
    assert sorted(p.strip() for p in header.split(",")) == sorted(PORTS)
    assert verilog.count("\nmodule ") == 1            # one flattened module
    config = json.loads((tmp_path / "hwq_config.json").read_text())
    assert CoreConfig.from_dict(config["config"]) == CoreConfig(pe=pe, lanes=4, simd=8)
    assert config["fingerprint"] == CoreConfig(pe=pe, lanes=4, simd=8).fingerprint()
    assert "| `0x38` | `BULK_WDATA` |" in (tmp_path / "hwq_regs.md").read_text()


@pytest.mark.sim
def test_waivers_are_needed_and_nothing_else_is_waived(tmp_path):
    path = tmp_path / "hwq_core.v"
    path.write_text(generate(CoreConfig(pe="bit_serial", lanes=2, simd=2, act_depth=64,
                                        weight_depth=64, param_depth=16, desc_depth=4)))
    bare = lint(path, waivers=False)
    assert not bare["ok"]
    assert set(bare["rules"]) - {""} <= set(WAIVERS)       # only the documented rules
    assert lint(path)["ok"]
    assert waiver_file().count("lint_off") == len(WAIVERS)


@pytest.mark.sim
@pytest.mark.parametrize("dsp", ["inferred", "ecp5"])
def test_rtl_writes_the_waiver_file_your_own_verilator_lint_needs(dsp, tmp_path, capsys):
    # without --lint: the folder alone lints clean with the user's own command line
    import subprocess

    from hwq.rtl.lint import verilator_executable

    code = main(["rtl", "--pe", "multiply", "--lanes", "2", "--simd", "2", "--table-bits", "4",
                 "--act-depth", "64", "--weight-depth", "64", "--param-depth", "16",
                 "--desc-depth", "4", "--dsp", dsp, "-o", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (tmp_path / "hwq_core.vlt").read_text() == waiver_file("hwq_core.v")
    assert out["paths"]["waivers"] == str(tmp_path / "hwq_core.vlt")
    assert ((tmp_path / "MULT18X18D.v").is_file()) == (dsp == "ecp5")
    proc = subprocess.run([verilator_executable(), "--lint-only", "-Wall", "hwq_core.v",
                           "hwq_core.vlt"], cwd=tmp_path, capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_only_the_core_memories_carry_an_attribute():
    # no_rw_check (no read/write collision emulation in synthesis) on the four memories the
    # host fills while idle or a layer uses one ping-pong region of; nothing else but the
    # parallel_case Yosys writes for a $pmux
    verilog = generate(CoreConfig(pe="multiply", lanes=2, simd=2, act_depth=64,
                                  weight_depth=64, param_depth=16, desc_depth=4))
    marked = re.findall(r"\(\* no_rw_check = 32'd1 \*\)\n  reg \[\d+:0\] (\w+) \[", verilog)
    assert sorted(marked) == ["act_mem", "desc_mem", "param_mem", "weight_mem"]
    others = set(re.findall(r"\(\*(.*?)\*\)", verilog)) - {" no_rw_check = 32'd1 "}
    assert others <= {" parallel_case "}
    assert re.search(r"reg \[31:0\] cycle_mem \[", verilog)   # the per-layer cycle counts


def test_program_preload_inline_and_readmemh(tmp_path):
    net = random_network(np.random.default_rng(0), input_shape=(2, 4, 4),
                         arch=(("conv", 3, 3, 1, 1, True),), kind="pot", bits=3)
    cfg = CoreConfig(pe="shift_add", lanes=2, simd=2, act_depth=64, weight_depth=64,
                     param_depth=16, desc_depth=4)
    program = compile(net, cfg)
    inline = generate(cfg, program=program)
    assert "weight_mem[0] = " in inline and "$readmemh" not in inline
    assert "act_mem[0] = " not in inline                  # all-zero memories: no initializer
    for name in ("desc", "weight", "param"):              # exactly the image, word by word
        found = {int(i): int(v, 16) for i, v in re.findall(
            rf"^    {name}_mem\[(\d+)\] = \d+'h([0-9a-f]+);$", inline, re.M)}
        lay = program.words.memories[name]
        assert found == dict(enumerate(lay.to_ints(program.images[name])))
    # the images are written into the text: the rest is the Verilog of the empty core
    bare = generate(cfg)
    assert re.sub(r"  initial begin\n(    \w+\[\d+\] = [^\n]*\n)*  end\n", "",
                  inline) == bare
    summary = write(cfg, tmp_path, program=program, readmemh=True)
    verilog = (tmp_path / "hwq_core.v").read_text()
    for name in ("desc", "weight", "param"):
        assert f'$readmemh("hwq_{name}.hex", {name}_mem);' in verilog
        assert (tmp_path / f"hwq_{name}.hex").is_file()
    assert summary["words"]["weight"]["chunks"] == program.images["weight"].shape[1]
    with pytest.raises(ValueError, match="readmemh=True needs a program"):
        generate(cfg, readmemh=True)


def test_cli_refuses_a_program_for_another_core(tmp_path, capsys):
    net = random_network(np.random.default_rng(0), kind="int", bits=3)
    path = compile(net, CoreConfig(pe="multiply", lanes=4, simd=4)).save(tmp_path / "p.hwqp")
    code = main(["rtl", "--pe", "multiply", "-o", str(tmp_path / "out"), "--program", str(path)])
    assert code == 2
    assert "Program was built for core" in capsys.readouterr().err


def test_cli_bad_config_is_a_usage_error(tmp_path, capsys):
    assert main(["rtl", "--pe", "multiply", "--lanes", "3", "-o", str(tmp_path)]) == 2
    assert "Lanes and SIMD width must divide one another" in capsys.readouterr().err


def test_generation_does_not_grow_with_memory_depth():
    # Amaranth writes a memory's initial value bit by bit, zeros included: 256 k words of
    # the 8x8 core's weights were a 76 M-character constant and minutes of generation
    from amaranth.back import rtlil

    from hwq.rtl.core import Core
    from hwq.rtl.generate import _no_zero_meminit

    texts = {}
    for depth in (4096, 262144):
        with _no_zero_meminit():
            texts[depth] = rtlil.convert(Core(config=CoreConfig(pe="shift_add",
                                                                weight_depth=depth)),
                                         name="hwq_core", emit_src=False)
    assert "$meminit" not in texts[262144]
    assert abs(len(texts[262144]) - len(texts[4096])) < len(texts[4096]) // 1000  # addresses


@pytest.mark.parametrize("pe, dsp", [("shift_add", "inferred"), ("bit_serial", "inferred"),
                                     ("multiply", "ecp5")])
def test_yosys_sees_one_word_memories_and_writes_the_same_verilog(pe, dsp):
    # Yosys' memory initial-value parameter grows with depth: it sees one-word memories,
    # the real depths go back into the declarations, and the text is what it was
    from amaranth.back import rtlil

    from hwq.rtl.core import Core
    from hwq.rtl.generate import _no_zero_meminit, _yosys

    cfg = CoreConfig(pe=pe, dsp=dsp, lanes=2, simd=2, act_depth=64, weight_depth=300,
                     param_depth=16, desc_depth=4)
    with _no_zero_meminit():
        text = rtlil.convert(Core(config=cfg), name="hwq_core", emit_src=False)
    shrunk = _yosys(text)
    assert shrunk == _yosys(text, shrink=False)
    assert re.search(r"^  reg \[\d+:0\] weight_mem \[299:0\];$", shrunk, re.M)
