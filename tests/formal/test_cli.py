"""`hwq prove`: the list, bad usage, a passing proof's table, a failing proof's exit code,
counterexample, trace and replay (a mutant substituted in this process, --jobs 1)."""

import json

import pytest

import hwq.rtl.pe as pe
from hwq.cli import main

from .test_mutants import ShiftOffByOne


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json(capsys):
    code, out, err = _run(capsys, "prove", "--list", "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)["proofs"]
    assert {r["block"] for r in rows} == {"pe", "mac_array", "requant", "maxpool", "writeback",
                                          "axil"}
    assert not any(r["slow"] for r in rows)
    code, out, _ = _run(capsys, "prove", "--list", "--slow", "--json")
    names = [r["name"] for r in json.loads(out)["proofs"]]
    assert len(set(names)) == len(names)            # each proof its own folder and trace
    code, out, _ = _run(capsys, "prove", "--list", "--slow", "--json", "pe")
    assert {r["block"] for r in json.loads(out)["proofs"]} == {"pe"}
    assert any(r["slow"] for r in json.loads(out)["proofs"])


@pytest.mark.parametrize(("argv", "words"), [
    (["nosuch"], "not 'nosuch'"),
    (["--jobs", "0"], "Jobs must be a positive integer, not 0"),
])
def test_bad_usage(capsys, argv, words):
    code, out, err = _run(capsys, "prove", *argv, "--json")
    assert code == 2
    assert json.loads(out)["exit_code"] == 2
    assert words in err and err.count("\n") == 1


def test_table_of_passing_proofs(capsys, tmp_path, monkeypatch):
    """The table and exit 0 (run_proofs stubbed: the proofs themselves are test_proofs')."""
    import hwq.formal.proofs as proofs

    def passing(selected, workdir, *, jobs=None):
        return [{"name": p.name, "block": p.kind, "variant": p.variant,
                 "widths": p.width_text, "engine": p.engine,
                 "depth": f"{p.mode} {p.depth}", "result": "pass", "seconds": 1.0}
                for p in selected]

    monkeypatch.setattr(proofs, "run_proofs", passing)
    code, out, err = _run(capsys, "prove", "writeback", "-o", str(tmp_path))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["block", "variant", "widths", "engine", "depth", "result",
                                "seconds"]
    assert lines[1].split()[:2] == ["writeback", "words"] and "pass" in lines[1]
    assert lines[-1] == "4 passed, 0 failed"       # words, slot and the two fused variants


@pytest.mark.formal
def test_failing_proof(capsys, tmp_path, monkeypatch):
    argv = ["prove", "pe.shift_add.pot.simd2", "--jobs", "1", "-o", str(tmp_path)]
    monkeypatch.setattr(pe, "PotDecoder", ShiftOffByOne)
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 1
    row = json.loads(out)["proofs"][0]
    assert row["result"] == "fail" and row["step"] == "basecase"
    assert (tmp_path / "pe.shift_add.pot.simd2_act3_w3.prove7.vcd").stat().st_size > 0
    assert row["inputs"] and set(row["inputs"][0]) >= {"a0", "a1", "code0", "code1"}
    assert row["replay"] and "golden dot" in row["replay"][0]
    assert "1 of 1 proof(s) failed" in err
    code, out, _ = _run(capsys, *argv)
    assert code == 1
    assert "counterexample (basecase)" in out and "cycle 0: " in out
    assert "replay against hwq.golden:" in out and out.splitlines()[-1] == "0 passed, 1 failed"
