"""Power and energy per inference with measured toggle rates (:mod:`hwq.rtl.asic_energy`).

Like ``test_asic.py`` these need OpenSTA and the OSU 0.18 um library (skipped without them
on a developer's machine, failing in CI).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from hwq.cli import main
from hwq.config import CoreConfig
from hwq.layout.compiler import compile as compile_network
from hwq.rtl import asic, asic_energy, liberty
from hwq.testing import random_inputs, random_network

from .test_asic import _flow, _tools_or_skip

TINY = CoreConfig(pe="shift_add", lanes=2, simd=2, weight_bits=4, act_depth=256,
                  weight_depth=256, param_depth=32, desc_depth=8)

COUNTER = """module counter(clk, rst, q);
  input clk;
  input rst;
  output [3:0] q;
  reg [3:0] cnt;
  reg [3:0] q;
  always @(posedge clk) begin
    if (rst) cnt <= 0; else cnt <= cnt + 1;
    q <= cnt ^ {cnt[2:0], 1'b0};
  end
endmodule
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWQ_CACHE_DIR", str(tmp_path / "cache"))


def test_harness_registers_take_the_rates_of_the_port_bits_they_hold():
    harness = asic.harness_only(COUNTER, "counter")
    toggles = {"TOP.hwq_core.cnt[0]": 8, "TOP.hwq_core.q[2]": 4, "TOP.hwq_core.rst": 1,
               "TOP.other.x": 5}
    rates = asic_energy.flop_rates(toggles, 16, harness, "TOP.hwq_core")
    assert rates == {"dut.cnt[0]": 0.5, "dut.q[2]": 0.25, "dut.rst": 1 / 16, "q_q[2]": 0.25}
    with pytest.raises(ValueError, match="Cycles must be positive, not 0"):
        asic_energy.flop_rates(toggles, 0, harness, "TOP.hwq_core")


def test_measured_flip_flops_are_rewired_and_opensta_applies_their_rates(tmp_path):
    result, work, lib = _flow(COUNTER, "counter", tmp_path)
    netlist = (work / "netlist.v").read_text()
    cells = liberty.read_cells(lib)
    flops = re.findall(r"^\s*DFF\w+\s+\\(\S+)_reg\s", netlist, re.M)
    assert {f"dut.cnt[{i}]" for i in range(4)} <= set(flops)

    def power(rate: float) -> dict:
        rates = {f"dut.cnt[{i}]": rate for i in range(4)}
        return asic_energy.power_with_rates(netlist=netlist, top="hwq_report_top", liberty=lib,
                                            cells=cells, rates=rates, clock_ns=10.0,
                                            activity=0.2)

    text, ports, counts = asic_energy.measured_netlist(
        netlist, "hwq_report_top", {"dut.cnt[1]": 0.25, "dut.nothing": 1.0}, cells)
    assert ports == [("hwq_act_0", "dut.cnt[1]_reg", 0.25)]
    assert counts == {"flops": len(flops), "measured": 1, "unmatched": len(flops) - 1,
                      "no_data_pin": 0}
    assert "input hwq_act_0;" in text and ".D(hwq_act_0)" in text
    p0, p_half, p1 = (power(r) for r in (0.0, 0.5, 1.0))
    assert p1["measured"] == 4 and p1["rate_mean"] == 1.0
    t0, th, t1 = (p["power"]["total"]["total"] for p in (p0, p_half, p1))
    assert t0 < th < t1
    # every duty is 0.5, so OpenSTA's propagation is linear in the rates: P(1) - P(0) is
    # twice P(0.5) - P(0) (6 printed digits)
    assert t1 - t0 == pytest.approx(2 * (th - t0), rel=1e-4)


def test_energy_per_inference_is_power_times_cycles_over_f(capsys):
    _tools_or_skip()
    net = random_network(np.random.default_rng(3), kind="pot", bits=[3, 4],
                         per_channel_bits=True, input_shape=(3, 6, 6))
    program = compile_network(net, TINY)
    x = random_inputs(np.random.default_rng(0), net, 2)
    first = asic_energy.energy_report(TINY, program, x, clock_ns=8.0, progress=None)
    e = first["energy"]
    assert (e["images"], e["cached"], e["clock_ns"]) == (2, False, 8.0)
    assert e["cycles_per_inference"] == e["cycles"] / 2
    total = e["power"]["total"]["total"]
    assert e["energy_per_inference_nj"] == total * e["cycles_per_inference"] * 8.0 / 1000
    assert e["measured"] + e["unmatched"] + e["no_data_pin"] == e["flops"]
    assert e["measured"] > 0.9 * e["flops"]  # the flip-flops keep their register's name
    # the vectorless figure of the same report is left as it was
    assert first["power"]["vectorless"] and first["power"]["activity"] == 0.2
    again = asic_energy.energy_report(TINY, program, x, clock_ns=8.0, progress=None)
    assert again["energy"]["cached"]
    assert again["energy"]["energy_per_inference_nj"] == e["energy_per_inference_nj"]
    text = asic_energy.format_energy(again)
    m = re.search(r"energy +([\d.]+) nJ per inference \(= ([\d.]+) mW x (\d+) cycles x "
                  r"([\d.]+) ns; logic and harness registers", text)
    assert m is not None, text
    shown, mw, cycles, ns = (float(v) for v in m.groups())
    # within the printed rounding: energy to 0.005 nJ, power to 0.0005 mW
    assert abs(shown - mw * cycles * ns / 1000) <= 0.005 + 0.0005 * cycles * ns / 1000
    assert f"toggle rates of {e['measured']} of {e['flops']} flip-flops" in text


def test_energy_needs_report_asic(capsys):
    assert main(["flow", "--energy", "--no-progress"]) == 2
    assert "--energy applies with --report --asic" in capsys.readouterr().err
    assert main(["flow", "--report", "--energy", "--no-progress"]) == 2
    assert "--energy applies with --report --asic" in capsys.readouterr().err


def test_bench_network_row_and_table():
    from hwq.bench import asic_networks

    flow = {"method": "inq", "images": 50, "ok": True, "sim_accuracy": 97.0,
            "cycles_per_inference": 2000.0}
    hw = {"logic": {"area": 2.5e6}, "memories": {"bits": 1000, "sram_um2": 4.0e4},
          "fmax_mhz": 150.0, "power": {"total": {"total": 300.0}},
          "energy": {"cycles_per_inference": 2500.0, "clock_ns": 10.0,
                     "power": {"total": {"total": 200.0}}, "energy_per_inference_nj": 5000.0,
                     "measured": 90, "flops": 100}}
    row = asic_networks._row("digits", "shift_add", flow, hw)
    assert (row["logic_mm2"], row["memory_mm2"], row["inferences_per_s"], row["energy_nj"],
            row["vectorless_nj"]) == (2.5, 0.04, 75000, 5000.0, 7500.0)  # 300 mW x 25 us
    lines = asic_networks.format_networks(
        [row, {"network": "lenet5", "pe": "multiply", "error": "boom"}]).splitlines()
    assert lines[2] == ("| digits | shift_add | inq | 2.5000 | 0.040 (1000) | 150.0 | 2000 | "
                        "75000 | 5000.00 | 7500.00 | 90/100 |")
    assert lines[3].startswith("| lenet5 | multiply | failed: boom |")
    with pytest.raises(ValueError, match="Networks must be built-in workloads"):
        asic_networks.network_rows(networks=("nope",), pes=("shift_add",))
    with pytest.raises(ValueError, match="Images must be a positive integer, not 0"):
        asic_networks.network_rows(networks=("digits",), pes=(), images=0)
    assert asic_networks.network_rows(networks=("digits",), pes=()) == []
    from hwq.bench.asic import bench_asic  # bad networks refused before any synthesis

    with pytest.raises(ValueError, match=r"not \['nope'\]"):
        bench_asic(pes=("shift_add",), networks=("nope",), out=None)
