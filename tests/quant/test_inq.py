"""INQ: the power-of-two set, the midpoint rounding, the partition and the masked retraining."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from torch import nn

from hwq.golden.formats import PotFormat
from hwq.quant import inq
from hwq.quant.base import fold_batchnorm, weight_layers
from hwq.quant.inq import (
    DEFAULT_SCHEDULE,
    inq_exponents,
    inq_pot_values,
    inq_round,
    inq_set,
    quantize_inq,
)
from hwq.workloads import train


@pytest.fixture
def folded(digits_reference) -> nn.Sequential:
    """A private BatchNorm-folded copy of the trained reference model."""
    return fold_batchnorm(digits_reference)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().clone() for n, m in weight_layers(model)}


# --- the set --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_abs", "bits", "n1", "n2"),
    [
        (1.0, 5, 0, -7),  # 4/3 -> n1 = 0; n2 = n1 + 1 - 8
        (0.75, 5, 0, -7),  # 4 * 0.75 / 3 = 1 exactly: the boundary belongs to n1 = 0
        (float(np.nextafter(0.75, 0.0)), 5, -1, -8),
        (0.4, 3, -1, -2),  # 0.533 -> -1; n2 = n1 + 1 - 2
        (2.748, 2, 1, 1),  # 3.664 -> 1; ternary: n2 = n1
        (3.0, 2, 2, 2),  # 4 exactly
        (6.0, 3, 3, 2),  # 8 exactly
        (0.01, 4, -7, -10),  # 0.0133 -> -7 (2**-7 = 0.0078); n2 = n1 + 1 - 4
        (1.0, 7, 0, -31),
    ],
)
def test_inq_exponents_hand_computed(max_abs, bits, n1, n2):
    assert inq_exponents(max_abs, bits) == (n1, n2)


def test_inq_set_b2_b3_b5():
    assert inq_set(1.0, 2).tolist() == [-1.0, 0.0, 1.0]
    assert inq_set(1.0, 3).tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    mags = [2.0**-e for e in range(7, -1, -1)]  # 2**-7 .. 2**0
    assert inq_set(1.0, 5).tolist() == [-m for m in mags[::-1]] + [0.0] + mags
    assert inq_set(0.4, 3).tolist() == [-0.5, -0.25, 0.0, 0.25, 0.5]


@pytest.mark.parametrize("bits", range(2, 8))
def test_inq_set_has_2_pow_b_minus_2_magnitudes(bits):
    values = inq_set(0.3, bits)
    assert values.size == 2 * 2 ** (bits - 2) + 1
    assert (values[values > 0].size, values[values < 0].size) == (2 ** (bits - 2),) * 2


@pytest.mark.parametrize(
    ("max_abs", "bits", "message"),
    [
        (1.0, 1, "INQ bit width must be an integer in 2..7, not 1"),
        (1.0, 8, "INQ bit width must be an integer in 2..7, not 8"),
        (1.0, 9, "INQ bit width must be an integer in 2..7, not 9"),
        (1.0, 3.0, "INQ bit width must be an integer in 2..7, not 3.0"),
        (1.0, True, "INQ bit width must be an integer in 2..7, not True"),
        (0.0, 3, "Largest weight magnitude must be a positive finite number, not 0.0"),
        (math.inf, 3, "Largest weight magnitude must be a positive finite number, not inf"),
    ],
)
def test_inq_exponents_rejects(max_abs, bits, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        inq_exponents(max_abs, bits)


# --- midpoint rounding ----------------------------------------------------------------------


def _nearest_ties_up(w: float, levels: list[float]) -> float:
    """Reference: nearest value of the set in the linear domain, ties to the larger magnitude."""
    best = min(levels, key=lambda v: (abs(w - v), -abs(v)))
    return best


def test_inq_round_exhaustive_grid():
    # b = 4, max|W| = 1: n1 = 0, n2 = -3; the set {0, +/-1/8, +/-1/4, +/-1/2, +/-1}.
    # Every boundary (1/16, 3/16, 3/8, 3/4) is a multiple of 1/128, so the grid hits them
    # exactly, and the points halfway between the boundaries too.
    n1, n2 = inq_exponents(1.0, 4)
    assert (n1, n2) == (0, -3)
    levels = inq_set(1.0, 4).tolist()
    grid = np.arange(-256, 257) / 128.0  # -2 .. 2: beyond the largest level too
    expected = [_nearest_ties_up(float(w), levels) for w in grid]
    np.testing.assert_array_equal(inq_round(grid, n1, n2), expected)


def test_inq_round_boundaries():
    n1, n2 = 0, -3
    below = np.nextafter  # the largest float below a boundary
    cases = {
        below(1 / 16, 0): 0.0,
        1 / 16: 1 / 8,  # (0 + 1/8) / 2: the smallest level's lower boundary 2**(n2-1)
        below(3 / 16, 0): 1 / 8,
        3 / 16: 1 / 4,  # (1/8 + 1/4) / 2
        below(3 / 8, 0): 1 / 4,
        3 / 8: 1 / 2,
        below(3 / 4, 0): 1 / 2,
        3 / 4: 1.0,
        below(3 / 2, 0): 1.0,
        3 / 2: 1.0,  # beyond the set: clamped to 2**n1
        1e9: 1.0,
        -3 / 16: -1 / 4,
        -below(1 / 16, 0): -0.0,
        0.0: 0.0,
    }
    w = np.array(list(cases))
    np.testing.assert_array_equal(inq_round(w, n1, n2), list(cases.values()))
    np.testing.assert_array_equal(inq_pot_values(w, n1, n2),
                                  [0, 1, 1, 2, 2, 4, 4, 8, 8, 8, 8, -2, 0, 0])


# --- the method -----------------------------------------------------------------------------


def _record(store: list):
    def on_step(step, model, masks):
        store.append((step, {k: v.clone() for k, v in masks.items()}, _weights(model)))
    return on_step


def test_partition_is_largest_first_and_grows(folded, digits_data):
    original = _weights(folded)
    steps: list = []
    quantize_inq(folded, digits_data, bits=4, epochs=0, progress=False, on_step=_record(steps))
    assert [s for s, _, _ in steps] == [0, 1, 2, 3]
    previous = {n: torch.zeros_like(w, dtype=torch.bool) for n, w in original.items()}
    for (_, masks, _), sigma in zip(steps, DEFAULT_SCHEDULE, strict=True):
        for name, w in original.items():
            mask = masks[name]
            assert int(mask.sum()) == math.floor(sigma * w.numel() + 0.5)
            assert bool((mask | ~previous[name]).all())  # the quantized set only grows
            new = mask & ~previous[name]
            if (~mask).any():  # every new weight is at least as large as every free one
                assert float(w.abs()[new].min()) >= float(w.abs()[~mask].max())
            previous[name] = mask


def test_frozen_weights_never_move_during_retraining(folded, digits_data):
    steps: list = []
    quantize_inq(folded, digits_data, bits=3, epochs=1, schedule=(0.5, 0.8, 1.0),
                 progress=False, num_threads=1, on_step=_record(steps))
    final = _weights(folded)
    snapshots = [(m, w) for _, m, w in steps] + [(None, final)]
    for (mask, before), (next_mask, after) in zip(snapshots, snapshots[1:], strict=False):
        for name in before:
            frozen = mask[name]
            assert torch.equal(after[name][frozen], before[name][frozen])
            if next_mask is None:
                continue
            assert bool((next_mask[name] | ~frozen).all())  # the quantized set only grows
            still_free = ~next_mask[name]
            if still_free.any():  # ... while the free weights did train
                assert not torch.equal(after[name][still_free], before[name][still_free])


def test_random_partition_grows_with_the_schedule(folded, digits_data):
    original = _weights(folded)["3"]
    steps: list = []
    quantize_inq(folded, digits_data, bits=4, epochs=0, partition="random", seed=3,
                 progress=False, on_step=_record(steps))
    first = steps[0][1]["3"]
    assert int(first.sum()) == original.numel() // 2
    # not largest-first: some free weight is larger than some quantized one
    assert float(original.abs()[first].min()) < float(original.abs()[~first].max())
    for (_, a, _), (_, b, _) in zip(steps, steps[1:], strict=False):
        assert all(bool((b[n] | ~a[n]).all()) for n in a)


@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_output_fits_pot_and_is_the_model(folded, digits_data, bits):
    qweights = quantize_inq(folded, digits_data, bits=bits, epochs=0, progress=False)
    layers = weight_layers(folded)
    assert list(qweights) == [n for n, _ in layers]
    for name, module in layers:
        q = qweights[name]
        assert q.spec.kind == "pot" and int(q.spec.bits) == bits
        PotFormat(bits).validate(q.values)
        mags = np.unique(np.abs(q.values[q.values != 0]))
        assert mags.size <= 2 ** (bits - 2)
        assert set(np.log2(mags).tolist()) <= set(range(2 ** (bits - 2)))
        # the scale is 2**n2 per channel, and the model holds exactly values * scale
        np.testing.assert_array_equal(np.exp2(np.round(np.log2(q.scale))), q.scale)
        np.testing.assert_array_equal(module.weight.detach().double().numpy(), q.dequantize())


def test_post_training_rounding_equals_inq_round(digits_reference):
    folded = fold_batchnorm(digits_reference)
    original = {n: m.weight.detach().double().numpy() for n, m in weight_layers(folded)}
    qweights = quantize_inq(folded, None, bits=3, schedule=(1,), granularity="layer")
    for name, w in original.items():
        n1, n2 = inq_exponents(float(np.abs(w).max()), 3)
        np.testing.assert_array_equal(qweights[name].values, inq_pot_values(w, n1, n2))
        np.testing.assert_array_equal(qweights[name].scale, np.full(w.shape[0], 2.0**n2))
    qch = quantize_inq(fold_batchnorm(digits_reference), None, bits=3, schedule=(1,))
    w = original["0"]
    for c in range(w.shape[0]):
        n1, n2 = inq_exponents(float(np.abs(w[c]).max()), 3)
        np.testing.assert_array_equal(qch["0"].values[c], inq_pot_values(w[c], n1, n2))
        assert qch["0"].scale[c] == 2.0**n2


def test_all_zero_layer_quantizes_to_zero():
    model = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.zero_()
    q = quantize_inq(model, None, bits=3, epochs=0)["0"]
    np.testing.assert_array_equal(q.values, np.zeros((2, 3), np.int64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 9}, "INQ bit width must be an integer in 2..7, not 9"),
        ({"bits": 3, "schedule": (0.5, 0.4, 1.0)}, "INQ schedule must be an increasing list "
         r"of portions in \(0, 1\] ending in 1, not \(0.5, 0.4, 1.0\)"),
        ({"bits": 3, "schedule": [0.5, 0.9]}, r"INQ schedule .* ending in 1, not \[0.5, 0.9\]"),
        ({"bits": 3, "schedule": [0, 1]}, r"INQ schedule .* ending in 1, not \[0, 1\]"),
        ({"bits": 3, "schedule": []}, r"INQ schedule .* ending in 1, not \[\]"),
        ({"bits": 3, "partition": "smallest"},
         r"INQ partition must be one of \('magnitude', 'random'\), not 'smallest'"),
        ({"bits": 3, "granularity": "tile"},
         r"INQ granularity must be one of \('layer', 'channel'\), not 'tile'"),
        ({"bits": 3, "epochs": -1}, "INQ epochs per step must be an integer >= 0, not -1"),
        ({"bits": 3, "lr": 0.0}, "INQ learning rate must be a positive finite number, not 0.0"),
    ],
)
def test_quantize_inq_rejects(folded, digits_data, kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        quantize_inq(folded, digits_data, progress=False, **kwargs)


def test_quantize_inq_needs_data_to_retrain(folded):
    with pytest.raises(ValueError, match="^INQ needs training data: an object with x_train"):
        quantize_inq(folded, None, bits=3, epochs=1)


def test_inq_5bit_keeps_accuracy(folded, digits_data):
    """A real (short) run: 5-bit INQ on the trained model stays close to fp32 (99.3 %)."""
    qweights = quantize_inq(folded, digits_data, bits=5, epochs=2, progress=False,
                            num_threads=1)
    assert len(qweights) == 4
    assert train.evaluate(folded, digits_data.x_test, digits_data.y_test) >= 97.5


def test_inq_doctests_pass():
    result = doctest.testmod(inq)
    assert result.attempted >= 4 and result.failed == 0
