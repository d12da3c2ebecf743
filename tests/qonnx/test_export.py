"""``hwq.qonnx.export_qonnx``: qonnx's executor reproduces hwq.golden bit for bit; export
then import gives the same integer network."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys

import numpy as np
import pytest

from hwq import golden
from hwq.golden.requant import multiplier_from_scale
from hwq.ir import Conv2d, Flatten, Linear, QuantizedNetwork, Requant, WeightSpec
from hwq.qonnx import MissingExtra, exporter, require, values
from hwq.qonnx.exporter import NETWORK_KEY, export_qonnx
from hwq.qonnx.importer import import_qonnx
from hwq.quant import quantize
from hwq.testing import GRAPH_BLOCKS, random_graph_network, random_inputs
from tests.qonnx.common import execute

CASES = [  # (seed, weight format, bits, act_bits, per-channel bits)
    (0, "int", 4, 8, False), (1, "int", (2, 3, 4), 6, True), (2, "pot", 5, 8, False),
    (3, "pot", (3, 4), 4, True), (4, "codebook", 3, 8, False), (5, "codebook", (2, 3), 7, True),
    (6, "int", 8, 16, False), (7, "int", 3, 2, False),
]


def _qonnx_run(net: QuantizedNetwork, x: np.ndarray) -> np.ndarray:
    out = execute(export_qonnx(net, batch=len(x)), x.astype(np.float32))
    (y,) = out.values()
    assert y.dtype == np.float32 and (y == np.rint(y)).all()
    return y.astype(np.int64)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}-{c[3]}bit-seed{c[0]}")
def test_qonnx_execution_equals_golden_on_random_graph_networks(case):
    seed, kind, bits, act_bits, per_channel = case
    rng = np.random.default_rng(seed)
    blocks = [str(b) for b in rng.permutation(GRAPH_BLOCKS)]  # residual adds, dw, pools...
    net = random_graph_network(rng, blocks=blocks, kind=kind, bits=bits, act_bits=act_bits,
                               per_channel_bits=per_channel)
    x = random_inputs(rng, net, 6)
    np.testing.assert_array_equal(_qonnx_run(net, x), golden.run(net, x))
    # and back: the same ops, formats and integer outputs
    back = import_qonnx(export_qonnx(net, batch=2))
    assert back.exact
    again = back.network
    assert [(op.kind, op.name, op.inputs) for op in again.ops] == \
        [(op.kind, op.name, op.inputs) for op in net.ops]
    for a, b in zip(net.weight_ops(), again.weight_ops(), strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
        assert a.spec.kind == b.spec.kind
        np.testing.assert_array_equal(a.spec.bits, b.spec.bits)
    assert again.act_bits == net.act_bits and again.input_scale == net.input_scale
    np.testing.assert_array_equal(golden.run(again, x), golden.run(net, x))


def _wide_network() -> QuantizedNetwork:
    """16-bit activations with INT8 weights (a conv over 16 channels) and POT weights up to
    2**14 (a 1x1 conv): float32 convs must be split into parts and digit planes."""
    rng = np.random.default_rng(0)
    w1 = rng.integers(-128, 128, size=(4, 16, 3, 3))
    w2 = np.array([[[[1 << 14]], [[-(1 << 9)]], [[0]], [[1 << 2]]]] * 3).reshape(3, 4, 1, 1)
    def rq(c, scale, lo=-32768):
        m = multiplier_from_scale(np.full(c, scale))
        return Requant(bias=rng.integers(-1000, 1000, c), M=m.M, S=m.S, lo=lo, hi=32767)
    ops = [Conv2d(name="wide", weight=w1, spec=WeightSpec("int", 8), requant=rq(4, 2e-4),
                  padding=1),
           Conv2d(name="pot", weight=w2, spec=WeightSpec("pot", 5), requant=rq(3, 1e-6, 0)),
           Flatten(name="flat"),
           Linear(name="fc", weight=rng.integers(-8, 8, size=(5, 3 * 16)),
                  spec=WeightSpec("int", 4), requant=rq(5, 1e-3))]
    return QuantizedNetwork(input_shape=(16, 4, 4), act_bits=16, input_scale=1.0, ops=ops)


def test_wide_layers_are_split_and_stay_exact():
    net = _wide_network()
    model = export_qonnx(net, batch=3)
    ann = json.loads({p.key: p.value for p in model.metadata_props}[NETWORK_KEY])
    assert ann["ops"]["wide"]["conv_parts"] > 1 and ann["ops"]["pot"]["conv_parts"] > 1
    x = random_inputs(np.random.default_rng(1), net, 3)
    np.testing.assert_array_equal(_qonnx_run(net, x), golden.run(net, x))
    back = import_qonnx(model).network
    np.testing.assert_array_equal(back.op("pot").weight, net.op("pot").weight)
    assert back.op("pot").spec.kind == "pot"
    np.testing.assert_array_equal(golden.run(back, x), golden.run(net, x))


def test_requant_beyond_float64_is_refused():
    w = np.full((1, 64, 3, 3), 127)
    m = multiplier_from_scale(np.array([0.9]))
    net = QuantizedNetwork(input_shape=(64, 3, 3), act_bits=16, input_scale=1.0, ops=[
        Conv2d(name="huge", weight=w, spec=WeightSpec("int", 8),
               requant=Requant(bias=[0], M=m.M, S=m.S, lo=-32768, hi=32767))])
    with pytest.raises(ValueError, match=r"huge: \(acc \+ bias\) \* M \+ 2\*\*\(S-1\) can "
                                         r"reach \d+ .*2\*\*53"):
        export_qonnx(net)


def test_export_checks_its_arguments():
    net = _wide_network()
    with pytest.raises(ValueError, match="Batch size must be a positive integer, not 0"):
        export_qonnx(net, batch=0)
    with pytest.raises(TypeError, match="QuantizedNetwork, not dict"):
        export_qonnx({})


def test_digits_network_exports_exactly(digits_reference, digits_data):
    result = quantize(digits_reference, "uniform", bits=4, data=digits_data, progress=False)
    net = result.network
    x = golden.quantize_input(digits_data.x_test.numpy(), net.input_scale, net.act_bits)
    want = golden.run(net, x)
    np.testing.assert_array_equal(_qonnx_run(net, x), want)
    back = import_qonnx(export_qonnx(net, batch=1)).network
    np.testing.assert_array_equal(golden.run(back, x), want)


@pytest.mark.parametrize("module", [exporter, values])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_missing_extra_is_named(monkeypatch):
    real = __import__("importlib").import_module

    def fake(name, *a):
        if name == "onnx":
            raise ImportError("No module named 'onnx'")
        return real(name, *a)

    monkeypatch.setattr("importlib.import_module", fake)
    with pytest.raises(MissingExtra, match=r'pip install "hwq\[onnx\]" \(cannot import onnx'):
        require("onnx")


def test_importing_hwq_needs_no_onnx():
    code = ("import sys, hwq, hwq.cli, hwq.qonnx, hwq.qonnx.cli_export, hwq.qonnx.cli_import; "
            "bad = [m for m in ('onnx', 'onnxruntime', 'qonnx') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
