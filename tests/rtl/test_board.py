"""Board designs without place-and-route: PLL settings, UART divider, pins and the build plan."""

import dataclasses
import json
import re

import pytest

from hwq.cli import main
from hwq.rtl.board import BOARDS, BoardTop, check_board, plan_clock, platform_for, pll_parameters


@pytest.mark.parametrize("in_mhz, out_mhz, dividers", [
    (25.0, 60.0, (5, 12, 13)),    # ULX3S: 25 / 5 * 12 = 60, VCO 780
    (48.0, 60.0, (4, 5, 13)),     # OrangeCrab: 48 / 4 * 5 = 60
    (25.0, 75.0, (1, 3, 10)),     # VCO 750 (of 600 and 750, the higher)
])
def test_pll_dividers_are_exact_and_in_range(in_mhz, out_mhz, dividers):
    p = pll_parameters(in_mhz, out_mhz)
    assert (p["clki_div"], p["clkfb_div"], p["clkop_div"]) == dividers
    assert p["out_mhz"] == out_mhz == in_mhz / p["clki_div"] * p["clkfb_div"]
    assert 400 <= p["vco_mhz"] <= 800 and in_mhz / p["clki_div"] >= 3.125
    assert p["clkop_cphase"] == p["clkop_div"] - 1


def test_clock_and_baud_are_checked_before_any_work():
    ulx3s = check_board("ulx3s-85f")
    plan = plan_clock(ulx3s, None, 3_000_000)
    assert (plan["pll"]["out_mhz"], plan["divider"], plan["baud_error"]) == (60.0, 20, 0.0)
    assert plan_clock(ulx3s, 50.0, 115_200)["divider"] == 434
    with pytest.raises(ValueError, match=r"^Baud rate 3000000 at 46.88 MHz is off by -2.3 % "
                                         r"\(divider 16\)"):
        plan_clock(ulx3s, 47.0, 3_000_000)
    with pytest.raises(ValueError, match=r"^Clock must be 3.125..400 MHz on ECP5, not 500.0$"):
        plan_clock(ulx3s, 500.0, 3_000_000)
    with pytest.raises(ValueError, match="^Baud rate 30000000 needs at least 4 clock cycles per "
                                         "bit: at most 15000000 at 60 MHz$"):
        plan_clock(ulx3s, 60.0, 30_000_000)
    with pytest.raises(ValueError, match="^Board must be one of ulx3s-12f, .*orangecrab-85f, "
                                         "not 'de10'$"):
        check_board("de10")


@pytest.mark.parametrize("name, clock_site, rx, tx, in_hz", [
    ("ulx3s-85f", "G2", "M1", "L4", 25e6),
    ("orangecrab-25f", "A9", "N17", "M18", 48e6),
])
def test_board_plan_has_the_pins_the_pll_and_the_core(name, clock_site, rx, tx, in_hz):
    board = BOARDS[name]
    platform = platform_for(board)
    platform.add_file("hwq_core.v", "// the core")
    top = BoardTop(clock=plan_clock(board, None, 3_000_000))
    plan = platform.prepare(top, name="hwq_board")
    lpf = plan.files["hwq_board.lpf"]
    sites = dict(re.findall(r'LOCATE COMP "(\w+?)__io" SITE "(\w+)";', lpf))
    assert {k: v for k, v in sites.items() if k.endswith(("rx", "tx")) or "clk" in k} == {
        next(k for k in sites if "clk" in k): clock_site, "uart_0__rx": rx, "uart_0__tx": tx}
    assert re.search(rf'FREQUENCY PORT "\w+" {in_hz}', lpf)
    il = plan.files["hwq_board.il"]
    pll = plan_clock(board, None, 3_000_000)["pll"]
    for param in ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV"):
        assert re.search(rf"parameter \\{param} {pll[param.lower()]}\b", il)
    assert "cell \\EHXPLLL" in il and "cell \\hwq_core" in il
    assert "read_verilog  hwq_core.v" in plan.files["hwq_board.ys"]


def test_cli_lists_boards_and_refuses_bad_usage(capsys, tmp_path):
    assert main(["build", "--board", "help", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["boards"]
    assert list(listed) == list(BOARDS)
    for argv, message in [
        (["--board", "nope", "-o", str(tmp_path)], "Board must be one of ulx3s-12f"),
        (["--board", "ulx3s-85f", "-o", str(tmp_path)], "--pe is required without --network"),
        (["--board", "ulx3s-85f", "--pe", "shift_add", "-o", str(tmp_path), "--preload"],
         "--preload applies with --network"),
        (["--board", "ulx3s-85f", "--pe", "shift_add"], "-o/--output is required"),
        (["--board", "ulx3s-85f", "--pe", "shift_add", "-o", str(tmp_path), "--ext-bits", "64"],
         "--ext-bits 64: the ulx3s-85f board top has no memory controller"),
        (["--board", "ulx3s-85f", "--pe", "shift_add", "-o", str(tmp_path), "--max-burst", "12"],
         "Max burst must be a power of two in 1..256 words, not 12"),
        (["--board", "ulx3s-85f", "--pe", "shift_add", "-o", str(tmp_path), "--clock", "47"],
         "Baud rate 3000000 at 46.88 MHz is off by -2.3 %"),
    ]:
        assert main(["build", *argv, "--json"]) == 2
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] is False and out["error"].startswith(message), out
    assert list(tmp_path.iterdir()) == []


def test_memories_fit_the_part():
    from hwq.config import CoreConfig
    from hwq.rtl.board import BRAM_BLOCKS, bram_blocks, core_bram_blocks, fit_memories

    assert bram_blocks(512, 36) == 1 and bram_blocks(1024, 37) == 3 and bram_blocks(63, 500) == 0
    assert bram_blocks(16384, 1) == 1 and bram_blocks(4096, 64) == 16
    default = CoreConfig(pe="shift_add")
    assert core_bram_blocks(default) == 308  # the default core fits no ECP5 (85F: 208)
    fitted = fit_memories(default, "LFE5U-85F")
    assert (fitted.act_depth, fitted.weight_depth, fitted.param_depth, fitted.desc_depth) == (
        4096, 8192, 1024, 32)
    assert core_bram_blocks(fitted) == 176 <= BRAM_BLOCKS["LFE5U-85F"] - 2
    crab = fit_memories(CoreConfig(pe="shift_add", lanes=4, simd=4), "LFE5U-25F")
    assert core_bram_blocks(crab) <= 54
    with pytest.raises(ValueError, match="^The core's memories need 62 DP16KD even at their "
                                         "smallest depths; LFE5U-12F has 32$"):
        fit_memories(CoreConfig(pe="shift_add", lanes=16, simd=16), "LFE5U-12F")


def test_cli_reports_a_build(capsys, tmp_path, monkeypatch):
    """The success path's text and JSON, with the tools replaced by a recorded report."""
    from hwq.rtl import board

    calls = []

    def fake_build(config, brd, folder, **kwargs):
        calls.append((config, brd.name, kwargs))
        return {"board": brd.name, "device": "LFE5U-25F", "fingerprint": config.fingerprint(),
                "clock_mhz": {"asked": 60.0, "pll": 60.0, "fmax_routed": 147.15},
                "uart": {"divider": 20, "baud_error": 0.0},
                "resources": {"DP16KD": {"used": 9, "available": 56}},
                "seconds": {"tools": 808.3}, "files": {"bit": f"{folder}/hwq_board.bit"},
                "timing_met": True}

    monkeypatch.setattr(board, "build_board", fake_build)
    out = tmp_path / "crab"
    argv = ["build", "--board", "orangecrab-25f", "--pe", "shift_add", "--lanes", "4",
            "--simd", "4", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out.splitlines()
    (config, name, kwargs), = calls
    assert name == "orangecrab-25f" and kwargs["max_burst"] == 64 and kwargs["baud"] == 3_000_000
    # no depth given: the largest memories whose block RAMs fit the LFE5U-25F
    assert board.core_bram_blocks(config) <= 54 < board.core_bram_blocks(
        dataclasses.replace(config, weight_depth=2 * config.weight_depth))
    assert text[0] == f"orangecrab-25f (LFE5U-25F): wrote {out}/hwq_board.bit and .svf"
    assert text[2] == "resources: DP16KD 9/56"
    assert text[3] == "clock 60 MHz (asked 60), routed Fmax 147.15 MHz: timing met"
    assert (out / "hwq_core.v").is_file() and (out / "hwq_regs.md").is_file()
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
