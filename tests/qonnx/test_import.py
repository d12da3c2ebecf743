"""``hwq.qonnx.import_qonnx`` on hand-built QONNX graphs: exact mappings, ties, folding of
float ops into the requantization, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from hwq import golden
from hwq.qonnx.importer import import_qonnx
from tests.qonnx.common import compare_layers, execute
from tests.qonnx.graphs import Graph, conv_net, inputs


def test_power_of_two_floor_graph_is_exact():
    model, p = conv_net()
    result = import_qonnx(model)
    net = result.network
    assert result.exact
    assert [op.kind for op in net.ops] == ["conv2d", "maxpool2d", "flatten", "linear"]
    assert net.act_bits == 9 and net.input_scale == 0.5 and net.meta["input_range"] == [-128, 127]
    conv, _, _, fc = net.ops
    np.testing.assert_array_equal(conv.weight, p["w"])
    assert conv.spec.kind == "int" and int(conv.spec.bits) == 4
    assert conv.padding == (1, 1, 1, 1)
    # rho = 0.5 * s_w / 0.25 = [1/2, 1/4]; FLOOR: bias - 1 / (2 rho) = bias - [1, 2]
    np.testing.assert_array_equal(conv.requant.M * 2.0 ** -conv.requant.S, [0.5, 0.25])
    np.testing.assert_array_equal(conv.requant.bias, p["bias"] - [1, 2])
    assert (conv.requant.lo, conv.requant.hi) == (0, 255) and conv.out_scale == 0.25
    np.testing.assert_array_equal(fc.weight, p["fc"])
    np.testing.assert_array_equal(fc.requant.M * 2.0 ** -fc.requant.S, [0.125] * 3)
    np.testing.assert_array_equal(fc.requant.bias, [-4] * 3)
    assert (fc.requant.lo, fc.requant.hi) == (-128, 127)
    x, x_int = inputs(32)
    y = execute(model, x)
    np.testing.assert_array_equal(golden.run(net, x_int), next(iter(y.values())))


def test_round_half_even_differs_from_hwq_exactly_on_ties():
    model, _ = conv_net(conv_mode="ROUND", fc_mode="ROUND")
    result = import_qonnx(model)
    assert not result.exact
    assert all("ties" in " ".join(result.notes[op.name]) for op in result.network.weight_ops())
    x, x_int = inputs(32)
    ctx = execute(model, x, full=True)
    differ, _ = compare_layers(result, ctx, x_int, float_exact=True)
    assert differ[result.network.ops[0].name] > 0  # rho = 1/2 and 1/4: ties happen


def test_half_up_equals_hwq_when_the_output_cannot_be_negative():
    model, _ = conv_net(conv_mode="HALF_UP")
    result = import_qonnx(model)
    assert result.notes[result.network.ops[0].name] == []
    x, x_int = inputs(32)
    np.testing.assert_array_equal(golden.run(result.network, x_int),
                                  next(iter(execute(model, x).values())))


def test_float_ops_fold_into_requantization():
    """BatchNormalization, a negative per-channel Mul (weights negated), Clip, an Add of
    scales 1/4 and 3/8 (weights 2:3), GlobalAveragePool, Reshape, MatMul + Add + Mul + Sub."""
    rng = np.random.default_rng(2)
    g = Graph()
    x = g.quant("x", 0.5, 8)
    a = g.node("Conv", [x, g.weight(rng.integers(-7, 8, (2, 1, 3, 3)), 0.25, 4, narrow=1)],
               pads=[1, 1, 1, 1])
    a = g.node("BatchNormalization", [a, g.const([2.0, 2.0]), g.const([0.5, -0.125]),
                                      g.const([0.25, 0.0]), g.const([4.0, 1.0])], epsilon=0.0)
    a = g.node("Clip", [a, g.const(0.0), g.const(6.0)])
    a = g.quant(a, 0.25, 6, signed=0, mode="FLOOR")
    w2 = rng.integers(1, 8, (2, 1, 1, 1))
    b = g.node("Conv", [x, g.weight(w2, 0.5, 4, narrow=1)])
    b = g.node("Mul", [b, g.const(np.array([-0.75, 0.75]).reshape(1, 2, 1, 1))])
    b = g.node("Relu", [b])
    b = g.quant(b, 0.375, 5, signed=0, mode="FLOOR")
    y = g.quant(g.node("Add", [a, b]), 0.5, 8, mode="FLOOR")
    y = g.quant(g.node("GlobalAveragePool", [y]), 0.25, 8, mode="FLOOR")
    y = g.node("Reshape", [y, g.const([0, -1], np.int64)])
    y = g.node("MatMul", [y, g.weight(rng.integers(-8, 8, (2, 3)), 0.5, 4)])
    y = g.node("Add", [y, g.const([0.25, -0.5, 0.125])])
    y = g.node("Mul", [y, g.const(2.0)])
    y = g.node("Sub", [y, g.const(0.5)])
    model = g.model(g.quant(y, 1.0, 8, mode="FLOOR"))
    result = import_qonnx(model)
    net = result.network
    assert [op.kind for op in net.ops] == ["conv2d", "conv2d", "add", "global_avgpool2d",
                                           "flatten", "linear"]
    first, second, add = net.ops[:3]
    assert result.notes[first.name] == ["BatchNormalization folded in float64"]
    assert all(result.notes[op.name] == [] for op in net.ops[1:])
    assert (first.requant.lo, first.requant.hi) == (0, 24)  # Clip(0, 6) / 0.25
    assert add.weights == (2, 3) and add.inputs == (first.name, second.name)
    np.testing.assert_array_equal(second.weight, w2 * np.array([-1, 1]).reshape(2, 1, 1, 1))
    x, x_int = inputs(32)
    np.testing.assert_array_equal(golden.run(net, x_int),
                                  next(iter(execute(model, x).values())))


def _refused(build) -> str:
    with pytest.raises(ValueError) as info:
        import_qonnx(build())
    return str(info.value)


def _graph_zero_point():
    return conv_net(act_zero=1.0)[0]


def _graph_ceil():
    return conv_net(conv_mode="CEIL")[0]


def _graph_per_channel_act():
    return conv_net(act_scale=np.array([0.25, 0.5]).reshape(1, 2, 1, 1))[0]


def _graph(body):
    def build():
        g = Graph()
        return g.model(body(g, g.quant("x", 0.5, 8)))
    return build


def _conv(g, x, **kw):
    return g.node("Conv", [x, g.weight(np.ones((2, 1, 3, 3)), 0.25, 4)], **kw)


def _no_input_quant():
    g = Graph()
    return g.model(g.quant(_conv(g, "x"), 1.0, 8))


def _add_of_convs(g, x):
    a = _conv(g, x, pads=[1, 1, 1, 1])
    b = g.node("Conv", [x, g.weight(np.ones((2, 1, 1, 1)), 0.25, 4)])
    return g.quant(g.node("Add", [a, b]), 1.0, 8)


REFUSALS = {
    "zero point": (_graph_zero_point, "quant5", "zero point 1"),
    "ceil": (_graph_ceil, "quant5", "rounding mode CEIL"),
    "per-channel activation scale": (_graph_per_channel_act, "quant5",
                                     "per-channel activation scale"),
    "float weights": (_graph(lambda g, x: g.quant(g.node("Conv", [x, g.const(np.ones(
        (2, 1, 3, 3)))]), 1.0, 8)), "conv1", "float constant"),
    "unquantized output": (_graph(_conv), "conv2", "not quantized"),
    "no input quantizer": (_no_input_quant, "conv1", "add an input quantizer"),
    "unsupported op": (_graph(lambda g, x: g.node("Sigmoid", [x])), "sigmoid1",
                       "op type 'Sigmoid' is not supported"),
    "add of unquantized outputs": (_graph(_add_of_convs), "add5",
                                   "adds the unquantized outputs"),
    "bipolar weights": (_graph(lambda g, x: g.quant(g.node("Conv", [x, g.weight(
        np.ones((2, 1, 3, 3)), 0.25, 1)]), 1.0, 8)), "quant1", "bipolar"),
    "requantized tensor": (_graph(lambda g, x: g.quant(x, 0.25, 8)), "quant1",
                           "requantizes the already quantized tensor"),
    "relu of a quantized tensor": (_graph(lambda g, x: g.node("Relu", [x])), "relu1",
                                   "ReLU of the quantized tensor"),
    "ceil_mode": (_graph(lambda g, x: g.node("MaxPool", [x], kernel_shape=[2, 2],
                                             ceil_mode=1)), "maxpool1", "ceil_mode=1"),
    "trunc": (_graph(lambda g, x: g.node("Trunc", [x, g.const(0.5), g.const(0.0),
                                                   g.const(8.0), g.const(4.0)],
                                         domain="qonnx.custom_op.general")),
              "trunc1", "TruncAvgPool"),
    "wide weights": (_graph(lambda g, x: g.quant(g.node("Conv", [x, g.weight(
        np.full((2, 1, 3, 3), 300), 0.25, 12)]), 1.0, 8)), "quant3", "at most 8"),
    "17-bit activations": (_graph(lambda g, x: g.quant(_conv(g, x), 1.0, 17)), "quant3",
                           "at most 16 bits"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_names_node_type_and_reason(case):
    build, node, reason = REFUSALS[case]
    message = _refused(build)
    assert f"node '{node}'" in message and reason in message, message


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not an ONNX model"):
        import_qonnx(path)
    with pytest.raises(FileNotFoundError, match="No ONNX file"):
        import_qonnx(tmp_path / "missing.onnx")
