"""The command line's conventions on careless and hostile input (issue 17, items 7-11).

Bad usage is one line on stderr (with ``--json`` also one JSON object on stdout), exit 2,
refused before the work and with nothing written; every message names the option or file.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from hwq import serialize
from hwq.cli import COMMANDS, check_output, main
from hwq.config import CoreConfig
from hwq.layout import Program, compile, core_config
from hwq.testing import random_network


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _usage(capsys, *argv: str) -> str:
    """The one error line of a bad command line (exit 2, nothing on stdout)."""
    t0 = time.perf_counter()
    code, out, err = _run(capsys, *argv)
    assert time.perf_counter() - t0 < 20  # refused before the work
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    return err[:-1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    net = random_network(np.random.default_rng(3), kind="pot", bits=[4], input_shape=(1, 8, 8))
    paths = {"net": serialize.save(net, folder / "net.safetensors")}
    program = compile(net, core_config(net, pe="shift_add", lanes=8, simd=8))
    paths["program"] = program.save(folder / "prog.hwqp")
    data = bytearray(paths["net"].read_bytes())
    data[len(data) // 2] ^= 1  # inside the JSON header
    paths["corrupt"] = folder / "corrupt.safetensors"
    paths["corrupt"].write_bytes(bytes(data))
    paths["file"] = folder / "a-file"
    paths["file"].write_text("not a folder")
    return paths


# --- argparse and the bare command -----------------------------------------------------------


def test_bare_hwq_lists_the_commands_on_stderr(capsys):
    code, out, err = _run(capsys)
    assert (code, out) == (2, "")
    assert all(f"    {name}" in err for name in COMMANDS)


@pytest.mark.parametrize("argv, line", [
    (["sim"], "hwq sim: error: the following arguments are required: network "
              "(see hwq sim --help)"),
    (["bench"], "hwq bench: error: the following arguments are required: BENCH "
                "(see hwq bench --help)"),
    # argparse quotes the choices or not, by Python version
    (["rtl", "--pe", "fpu", "-o", "x"], "hwq rtl: error: argument --pe: invalid choice: 'fpu' "
     "(choose from {q}shift_add{q}, {q}bit_serial{q}, {q}multiply{q}) (see hwq rtl --help)"),
    (["frobnicate"], "hwq: error: argument COMMAND: invalid choice: 'frobnicate' (choose from "
     + ", ".join("{q}" + name + "{q}" for name in COMMANDS) + ") (see hwq --help)"),
])
def test_argparse_errors_are_one_line(capsys, argv, line):
    assert _usage(capsys, *argv) in (line.format(q=""), line.format(q="'"))


def test_argparse_errors_with_json_print_one_object(capsys):
    code, out, err = _run(capsys, "sim", "--limit", "x", "--json")
    assert code == 2
    assert json.loads(out) == {"ok": False, "exit_code": 2, "error": "argument --limit: must be "
                               "an integer >= 1, not 'x'"}
    assert out.count("\n") == 1 and err.count("\n") == 1


# --- hwq sim ---------------------------------------------------------------------------------


def test_sim_says_why_a_network_does_not_load(capsys, files):
    line = _usage(capsys, "sim", str(files["corrupt"]))
    # the flipped bit lands in the manifest: the network's own loader says so
    assert line == (f"hwq sim: error: {files['corrupt']}: manifest checksum mismatch (the header "
                    "was modified or corrupted)")
    assert "Program" not in line and "magic" not in line


@pytest.mark.parametrize("argv, message", [
    (["--limit", "1000"], "--limit must be in 1..540 with --inputs digits (the digits test "
                          "images), not 1000"),
    (["--inputs", "random", "--limit", str(10**12)],
     f"--limit must be in 1..100000 with --inputs random, not {10**12}"),
    (["--limit", "0"], "argument --limit: must be an integer >= 1, not '0' (see hwq sim --help)"),
    (["--seed", "-1"], "argument --seed: must be an integer >= 0, not '-1' (see hwq sim --help)"),
    (["--seed", "3"], "--seed applies to --inputs random, not to --inputs digits"),
    (["--lanes", "0"], "argument --lanes: must be an integer in 1..256, not '0' "
                       "(see hwq sim --help)"),
])
def test_sim_refuses_bad_values(capsys, files, argv, message):
    assert _usage(capsys, "sim", str(files["net"]), *argv) == f"hwq sim: error: {message}"


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arrays")
    rng = np.random.default_rng(0)
    paths = {"ints": folder / "ints.npy", "wide": folder / "wide.npy",
             "shape": folder / "shape.npy", "two": folder / "two.npz", "text": folder / "x.txt"}
    np.save(paths["ints"], rng.integers(-128, 128, size=(5, 1, 8, 8)))
    np.save(paths["wide"], np.full((2, 1, 8, 8), 300))
    np.save(paths["shape"], np.zeros((2, 1, 28, 28), dtype=np.float32))
    np.savez(paths["two"], x=np.zeros((10, 1, 8, 8), np.float32), y=np.zeros(10, np.int64))
    paths["text"].write_text("1 2 3")
    return paths


@pytest.mark.parametrize("argv, message", [
    (["--inputs", "{text}"], "--inputs must be digits, random, FILE.npy or FILE.npz, not '{text}'"),
    (["--inputs", "/nonexistent.npy"], "No inputs file at /nonexistent.npy"),
    (["--inputs", "{shape}"], "--inputs {shape} holds images of shape (1, 28, 28); the network "
                              "takes (1, 8, 8)"),
    (["--inputs", "{wide}"], "--inputs {wide}: integer inputs must be in -128..127 (8-bit "
                             "activations), not 300..300"),
    (["--inputs", "{two}", "--limit", "3"], "--limit must be in 1..2 with --inputs {two} (its "
                                            "test images), not 3"),
    (["--inputs", "{ints}", "--seed", "1"], "--seed applies to --inputs random, not to --inputs "
                                            "{ints}"),
])
def test_sim_refuses_bad_input_files(capsys, files, arrays, argv, message):
    argv = [a.format(**arrays) for a in argv]
    line = _usage(capsys, "sim", str(files["net"]), *argv)
    assert line == "hwq sim: error: " + message.format(**arrays)


def test_sim_runs_an_integer_npy_as_it_is_on_a_program(capsys, files, arrays, monkeypatch):
    import importlib

    import hwq.sim

    seen = []

    def fake(program, config, x, **kwargs):   # records what would run on Verilator
        seen.append(x)
        raise SystemExit(0)

    monkeypatch.setattr(hwq.sim, "simulate", fake)
    monkeypatch.setattr(importlib.import_module("hwq.sim.simulate"), "simulate", fake)
    with pytest.raises(SystemExit):
        main(["sim", str(files["program"]), "--inputs", str(arrays["ints"]), "--limit", "4"])
    np.testing.assert_array_equal(seen[0], np.load(arrays["ints"])[:4])
    assert seen[0].dtype == np.int64


@pytest.mark.parametrize("argv, message", [
    (["--network", "{net}", "--model", "x.py:f"], "--model x.py:f applies when quantizing, not "
                                                  "with --network {net} (give its test images "
                                                  "with --data)"),
    (["--network", "{net}", "--data", "{ints}"], "--data {ints} must be an .npz of x_train, "
                                                 "y_train, x_test, y_test (or x, y), not an .npy "
                                                 "array"),
    (["--network", "{net}", "--data", "{wrong}"], "Network {net} takes (1, 8, 8) inputs; the "
                                                  "{wrong} test images are (3, 8, 8) (choose "
                                                  "--data)"),
    (["--model", "cifar"], "Unknown model 'cifar'; allowed: digits, lenet5, resnet8, sepnet, "
                           "path/to/file.py:function or FILE.pt2"),
    (["--network", "{net}", "--data", "{two}", "--limit", "3"], "--limit must be in 1..2, not 3"),
])
def test_flow_refuses_bad_models_and_data(capsys, files, arrays, tmp_path, argv, message):
    np.savez(tmp_path / "wrong.npz", x=np.zeros((5, 3, 8, 8), np.float32), y=np.zeros(5, int))
    names = {**arrays, "net": files["net"], "wrong": tmp_path / "wrong.npz"}
    line = _usage(capsys, "flow", *[a.format(**names) for a in argv])
    assert line == "hwq flow: error: " + message.format(**names)


@pytest.mark.parametrize("argv, message", [
    (["--lanes", "4"], "--lanes applies to a network, not to the Program {p} (it holds its own "
                       "core config)"),
    (["--pe", "multiply", "--simd", "4"], "--pe and --simd apply to a network, not to the "
                                          "Program {p} (it holds its own core config)"),
    ([], "--inputs digits needs a network (its input scale), not the Program {p}; use "
         "--inputs random or an integer FILE.npy"),
])
def test_sim_refuses_what_does_not_apply_to_a_program(capsys, files, argv, message):
    line = _usage(capsys, "sim", str(files["program"]), *argv)
    assert line == "hwq sim: error: " + message.format(p=files["program"])


# --- output paths, checked before the work ---------------------------------------------------


@pytest.mark.parametrize("argv, option, target", [
    (["quantize", "--bits", "4", "-o", "{file}/net.safetensors"], "-o/--output",
     "{file}/net.safetensors"),
    (["rtl", "--pe", "multiply", "-o", "{file}/rtl"], "-o/--output", "{file}/rtl"),
    (["bench", "golden", "-o", "{file}/g.json"], "-o/--out", "{file}/g.json"),
    (["sim", "{net}", "--cache-dir", "{file}/cache"], "--cache-dir", "{file}/cache"),
    (["flow", "--cache-dir", "{file}/cache"], "--cache-dir", "{file}/cache"),
    (["doctor", "--cache-dir", "{file}/cache"], "--cache-dir", "{file}/cache"),
])
def test_an_output_under_a_file_is_refused_before_the_work(capsys, files, argv, option, target):
    names = {"file": files["file"], "net": files["net"]}
    argv = [a.format(**names) for a in argv]
    line = _usage(capsys, *argv)
    command = argv[0] if argv[0] != "bench" else "bench"
    assert line == (f"hwq {command}: error: {option} {target.format(**names)}: cannot write "
                    f"there: {files['file']} is a file, not a folder")


def test_check_output(tmp_path):
    assert check_output(tmp_path / "new" / "deeper" / "x.json", "-o") == \
        tmp_path / "new" / "deeper" / "x.json"
    assert not (tmp_path / "new").exists()  # nothing created
    with pytest.raises(ValueError, match=f"^-o {tmp_path}: cannot write there: it is a folder, "
                                         "not a file$"):
        check_output(tmp_path, "-o")
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match=f"^--cache-dir {tmp_path / 'f'}: cannot write there: "
                                         "it is a file, not a folder$"):
        check_output(tmp_path / "f", "--cache-dir", folder=True)
    with pytest.raises(ValueError, match="^-o /sys/x.json: cannot write there: /sys: "):
        check_output("/sys/x.json", "-o")  # sysfs takes no new files, even from root
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# --- values refused up front, naming the option ----------------------------------------------


@pytest.mark.parametrize("argv, line", [
    (["flow", "--network", "n.safetensors", "--bits", "99", "--method", "foo"],
     "hwq flow: error: --method and --bits apply when quantizing, not with --network "
     "n.safetensors"),
    (["flow", "--network", "n.safetensors", "--seed", "1"],
     "hwq flow: error: --seed applies when quantizing, not with --network n.safetensors"),
    (["flow", "--method", "foo"], "hwq flow: error: Unknown quantization method 'foo'; allowed: "
     "uniform, uniform-qat, inq, slq, mlq, tq, joint"),
    (["flow", "--bits", "99"], "hwq flow: error: Method 'inq' takes --bits 2..7, not 99"),
    (["flow", "--seed", "-1"], "hwq flow: error: argument --seed: must be an integer >= 0, "
     "not '-1' (see hwq flow --help)"),
    (["flow", "--pe", "shift_add", "--method", "uniform"], "hwq flow: error: Method 'uniform' "
     "gives INT weights; the shift_add PE takes POT"),
    (["flow", "--pe", "multiply", "--method", "inq"], "hwq flow: error: Method 'inq' gives POT "
     "weights; the multiply PE takes INT and CODEBOOK"),
    (["flow", "--pe", "bit_serial", "--method", "joint"], "hwq flow: error: Method 'joint' needs "
     "a size budget, which hwq flow does not take: quantize with hwq quantize, then hwq flow "
     "--network"),
    (["report", "--pe", "multiply", "--freq", "nan"], "hwq report: error: argument --freq: must "
     "be a positive number of MHz, not 'nan' (see hwq report --help)"),
    (["report", "--pe", "multiply", "--freq", "-5"], "hwq report: error: argument --freq: must "
     "be a positive number of MHz, not '-5' (see hwq report --help)"),
    (["quantize", "--bits", "4", "--seed", "-1", "-o", "n.safetensors"], "hwq quantize: error: "
     "argument --seed: must be an integer >= 0, not '-1' (see hwq quantize --help)"),
    (["bench", "tq", "--bits", "0.1", "-o", "{tmp}/tq.json"], "hwq bench: error: TQ average "
     "bits must be at least 0.3421 for the digits model (its smallest allocation), not 0.1"),
    (["rtl", "--pe", "multiply", "--readmemh", "-o", "{tmp}/rtl"],
     "hwq rtl: error: --readmemh applies with --program (the images the files hold)"),
])
def test_bad_values_are_refused_naming_the_option(capsys, tmp_path, argv, line):
    assert _usage(capsys, *[a.format(tmp=tmp_path) for a in argv]) == line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["rtl", "report"])
def test_memories_too_large_to_generate_are_refused_up_front(capsys, tmp_path, command):
    argv = [command, "--pe", "multiply", "--lanes", "256", "--simd", "256",
            "--weight-depth", str(1 << 22)] + (["-o", str(tmp_path / "rtl")]
                                                 if command == "rtl" else [])
    line = _usage(capsys, *argv)
    assert line.startswith(f"hwq {command}: error: Core memories of 1099699.9 Mbit need about "
                           "131094.5 GiB to generate (128 bytes per memory bit), more than this "
                           "machine's ")
    assert line.endswith("the largest is the weight memory, weight_depth 4194304 x 262183 "
                         "bits: lower the depths")
    assert list(tmp_path.iterdir()) == []


def test_check_buildable_against_a_given_memory():
    from hwq.rtl.generate import check_buildable, generation_bytes

    config = CoreConfig(pe="multiply")  # the default memories: 5.6 Mbit
    need = generation_bytes(config)
    assert need == (64 << 20) + 128 * 5_616_800
    check_buildable(config, memory_bytes=need)
    with pytest.raises(ValueError, match=r"^Core memories of 5.6 Mbit need about 0.7 GiB .*"
                                         r"the largest is the weight memory, weight_depth 16384 "
                                         r"x 295 bits: lower the depths$"):
        check_buildable(config, memory_bytes=need - 1)


def test_a_program_for_another_core_names_the_differing_fields(capsys, files, tmp_path):
    cfg = Program.load(files["program"]).config          # memories fitted by core_config
    line = _usage(capsys, "rtl", "--pe", "shift_add", "--lanes", "4", "--act-depth",
                  str(cfg.act_depth * 2), "--weight-depth", str(cfg.weight_depth),
                  "--param-depth", str(cfg.param_depth), "--desc-depth", str(cfg.desc_depth),
                  "--table-bits", str(cfg.table_bits), "--pool-words", str(cfg.pool_words),
                  "--program", str(files["program"]), "-o", str(tmp_path / "rtl"))
    assert line.startswith("hwq rtl: error: Program was built for core ")
    assert line.endswith(f"it needs lanes 8 (the core has 4), act_depth {cfg.act_depth} (the "
                         f"core has {cfg.act_depth * 2})")
