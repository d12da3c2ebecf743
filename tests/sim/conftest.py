"""Fixtures for the simulation tests: a throwaway build cache and one shared Verilator build.

Every test here runs with ``HWQ_CACHE_DIR`` pointing at a cache inside pytest's temporary
folder, so the user's cache is never touched, and with Python's temporary folder inside the
test's ``tmp_path``. The cache is shared by the pytest-xdist workers
of one run (the build's file lock makes them wait for each other), so the self-check design is
compiled once per run, not once per worker.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from hwq.sim import build as sim_build
from hwq.sim import doctor


@pytest.fixture(scope="session")
def sim_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build cache for this test run, shared by all xdist workers."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # .../pytest-N/popen-gwK -> .../pytest-N, common to the workers
    folder = base / "hwq-sim-cache"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(autouse=True)
def _isolated_folders(sim_cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sim_build.CACHE_ENV, str(sim_cache_dir))
    # failed cocotb runs keep their temporary folder (for the log): keep it in pytest's tmp
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))


@pytest.fixture(scope="session")
def doctor_verilog() -> str:
    """Verilog of ``hwq doctor``'s self-check design, exactly as the doctor emits it."""
    from amaranth.back import verilog

    return verilog.convert(doctor.doctor_design(), name=doctor.TOPLEVEL)


@pytest.fixture(scope="session")
def doctor_build(sim_cache_dir: Path, doctor_verilog: str) -> sim_build.VerilatorBuild:
    """The self-check design built once per run, in the shared test cache."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / f"{doctor.TOPLEVEL}.v"
        source.write_text(doctor_verilog)
        return sim_build.build(source, doctor.TOPLEVEL, cache_dir=sim_cache_dir, waves=False,
                               build_args=doctor.FAST_COMPILE)
