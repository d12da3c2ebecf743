"""The uniform baseline: per-channel symmetric INT(b) weights, PTQ and QAT (STE)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from hwq import golden
from hwq.quant.base import fold_batchnorm, weight_layers
from hwq.quant.fakequant import ActQuant, IntQuant, IntWeightQuantPerChannel, round_ste
from hwq.quant.integerize import fake_quant_model
from hwq.quant.uniform import quantize_uniform, quantize_uniform_qat


def _golden_accuracy(folded, qweights, data) -> tuple[float, int]:
    """(golden accuracy, test images whose fake-quant integer outputs differ from golden)."""
    fq = fake_quant_model(folded, qweights, data.x_train)
    net = fq.to_network()
    xi = golden.quantize_input(data.x_test.numpy(), net.input_scale, net.act_bits)
    out = golden.run(net, xi)
    mismatches = int((fq.to_int(data.x_test).numpy() != out).any(axis=1).sum())
    return 100.0 * float((out.argmax(1) == data.y_test.numpy()).mean()), mismatches


# --- quantizer primitives -------------------------------------------------------------------


def test_round_ste_rounds_half_to_even_and_passes_gradients():
    x = torch.tensor([-1.5, -0.5, 0.5, 1.5, 2.5, 0.49], requires_grad=True)
    y = round_ste(x)
    assert y.tolist() == [-2.0, -0.0, 0.0, 2.0, 2.0, 0.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0] * 6


def test_int_quant_gradient_is_zero_where_clamped():
    q = IntQuant(3, narrow_range=True)  # -3..3
    x = torch.tensor([-5.0, -0.9, 0.2, 1.3, 4.0], requires_grad=True)
    y = q(x, torch.tensor(0.5))
    assert y.tolist() == [-1.5, -1.0, 0.0, 1.5, 1.5]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_act_quant_calibrates_and_fuses_relu():
    q = ActQuant(8, relu=True)
    assert not q.calibrated
    x = torch.tensor([-3.0, 0.0, 0.5, 2.0])
    assert q.calibrate(x) == 2.0 / 127  # ReLU first: the negative peak does not count
    assert (q.lo, q.hi) == (0, 127)
    assert q.to_int(x).tolist() == [0.0, 0.0, 32.0, 127.0]  # 0.5 * 63.5 = 31.75
    signed = ActQuant(4)
    signed.calibrate(torch.tensor([-1.4, 0.62]))
    assert (signed.lo, signed.hi) == (-8, 7)
    assert signed.to_int(torch.tensor([-1.4, -1.8, 0.62])).tolist() == [-7.0, -8.0, 3.0]
    with pytest.raises(ValueError, match="Calibration must be one of max, percentile"):
        signed.calibrate(torch.ones(3), "kl")


# --- post-training quantization -------------------------------------------------------------


def test_uniform_hand_computed_values():
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.3, -0.1, 0.05], [0.0, 0.0, 0.0]]))
    model = nn.Sequential(lin)
    qw = quantize_uniform(model, None, bits=3)["0"]
    # 3 bits, narrow range -3..3: scale = 0.3 / 3; 0.05 / 0.1 = 0.5 rounds to even 0
    np.testing.assert_array_equal(qw.values, [[3, -1, 0], [0, 0, 0]])
    assert qw.scale[0] == pytest.approx(0.1, rel=1e-7) and qw.scale[1] == 1.0
    np.testing.assert_array_equal(qw.spec.bits, 3)
    assert qw.spec.kind == "int"
    assert torch.equal(lin.weight, torch.from_numpy(qw.dequantize()).float())


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_uniform_per_channel_levels_on_digits(digits_model, bits):
    folded = fold_batchnorm(digits_model)
    floats = {n: m.weight.detach().double().clone() for n, m in weight_layers(folded)}
    qweights = quantize_uniform(folded, None, bits=bits)
    top = (1 << (bits - 1)) - 1
    assert list(qweights) == ["0", "3", "7", "12"]
    for name, module in weight_layers(folded):
        qw, w = qweights[name], floats[name]
        peak = w.abs().reshape(w.shape[0], -1).amax(dim=1).numpy()
        np.testing.assert_array_equal(qw.scale, peak / top)
        flat = np.abs(qw.values.reshape(qw.values.shape[0], -1))
        np.testing.assert_array_equal(flat.max(axis=1), top)  # every channel reaches +-top
        expect = np.rint(w.numpy() / (peak / top).reshape((-1,) + (1,) * (w.dim() - 1)))
        np.testing.assert_array_equal(qw.values, expect.astype(np.int64))
        assert torch.equal(module.weight, torch.from_numpy(qw.dequantize()).float())


@pytest.mark.parametrize("bits", [1, 9, 2.0, True, "4"])
def test_uniform_rejects_bits(bits):
    with pytest.raises(ValueError, match=r"Uniform quantization takes bits in 2\.\.8, not "):
        quantize_uniform(nn.Sequential(nn.Linear(2, 2)), None, bits=bits)


def test_uniform_ptq_accuracy(digits_reference, digits_data):
    folded = fold_batchnorm(digits_reference)
    acc8, mism8 = _golden_accuracy(folded, quantize_uniform(folded, None, bits=8), digits_data)
    assert mism8 == 0 and acc8 >= 98.5
    folded2 = fold_batchnorm(digits_reference)
    acc2, mism2 = _golden_accuracy(folded2, quantize_uniform(folded2, None, bits=2), digits_data)
    assert mism2 == 0 and acc2 < 80  # 2-bit rounding without retraining collapses


# --- quantization-aware training ------------------------------------------------------------


def _subset(data, n: int = 320) -> SimpleNamespace:
    return SimpleNamespace(x_train=data.x_train[:n], y_train=data.y_train[:n],
                           x_test=data.x_test, y_test=data.y_test)


def test_qat_recovers_2_bit_accuracy(digits_model, digits_data):
    folded = fold_batchnorm(digits_model)
    before = folded[0].weight.detach().clone()
    qweights = quantize_uniform_qat(folded, digits_data, bits=2, epochs=2, progress=False)
    assert not torch.equal(folded[0].weight, before)
    for name, module in weight_layers(folded):
        qw = qweights[name]
        assert set(np.unique(qw.values).tolist()) <= {-1, 0, 1}
        assert torch.equal(module.weight, torch.from_numpy(qw.dequantize()).float())
    accuracy, mismatches = _golden_accuracy(folded, qweights, digits_data)
    assert mismatches == 0
    assert accuracy >= 90.0  # 2-bit PTQ of the same model: ~52 %


def test_qat_is_deterministic_and_weights_only_mode_cleans_up(digits_reference, digits_data):
    data = _subset(digits_data)
    runs = []
    for _ in range(2):
        folded = fold_batchnorm(digits_reference)
        runs.append(quantize_uniform_qat(folded, data, bits=3, epochs=1, progress=False, seed=3))
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name].values, runs[1][name].values)
        np.testing.assert_array_equal(runs[0][name].scale, runs[1][name].scale)
    folded = fold_batchnorm(digits_reference)
    qweights = quantize_uniform_qat(folded, data, bits=3, epochs=1, progress=False,
                                    act_bits=None)
    assert not any(hasattr(m, "parametrizations") for m in folded.modules())
    assert set(qweights) == {"0", "3", "7", "12"}
    assert all(np.abs(q.values).max() == 3 for q in qweights.values())


def test_int_weight_quant_trains_through_the_ste():
    q = IntWeightQuantPerChannel(2)
    w = torch.tensor([[0.9, -0.2, 0.5], [0.0, 0.0, 0.0]], requires_grad=True)
    y = q(w)
    assert y.tolist() == [[0.8999999761581421, -0.0, 0.8999999761581421], [0.0, 0.0, 0.0]]
    y.sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
