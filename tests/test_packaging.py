"""The package layout of docs/architecture.md section 1: four folders, one import namespace."""

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return cfg["package-dir"], set(cfg["packages"])


def test_every_package_folder_is_declared():
    package_dir, packages = _declared()
    found = set()
    for name, folder in package_dir.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    # a sub-folder of hwq/ that another mapping owns would be counted twice; none does
    assert found == packages


def test_parts_import_under_one_namespace():
    for name in ("hwq", "hwq.golden", "hwq.rtl", "hwq.sim", "hwq.host"):
        module = importlib.import_module(name)
        assert module.__name__ == name
    assert Path(importlib.import_module("hwq.rtl").__file__).parent.name == "rtl"
    assert Path(importlib.import_module("hwq.sim").__file__).parent.name == "sim"
    assert Path(importlib.import_module("hwq.host").__file__).parent.name == "host"


def test_every_data_file_is_package_data():
    # a non-editable install carries only the declared data files (the C++ of hwq.sim)
    package_dir, _ = _declared()
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = {(name, f) for name, files in cfg.get("package-data", {}).items() for f in files}
    found = set()
    for name, folder in package_dir.items():
        for path in (ROOT / folder).iterdir():
            if path.is_file() and path.suffix not in (".py", ".pyc"):
                found.add((name, path.name))
    assert found == declared == {("hwq.sim", "hwq_harness.cpp")}
def test_public_names():
    from hwq.layout import compiler, core_config
    from hwq.sim import SimResult, simulate
    from hwq.sim import simulate as sim_module_function
    from hwq.sim.simulate import SimResult as SimResultToo
    from hwq.sim.simulate import simulate as simulate_too

    assert simulate is simulate_too is sim_module_function and callable(simulate)
    assert SimResult is SimResultToo
    assert core_config is compiler.core_config
