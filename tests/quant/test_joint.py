"""Tests of ``joint``: the knapsack projections, k-means with a fixed zero, the size
accounting, and a short run on digits through integerization, the golden model and the
bit-serial layout."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from hwq.config import CoreConfig
from hwq.golden.network import quantize_input, run
from hwq.ir import WeightSpec
from hwq.layout import compile as compile_layout
from hwq.layout import execute
from hwq.quant.base import QuantizedWeight, fold_batchnorm, weight_layers
from hwq.quant.integerize import fake_quant_model
from hwq.quant.joint import (
    budget_from,
    choose_bits,
    index_bits,
    kmeans_zero,
    knapsack_masks,
    layer_importance,
    layer_size,
    quantize_joint,
    sparse_size,
)
from hwq.quant.joint.admm import _Distilled, chain_links, constant_layers
from hwq.quant.joint.compressed import from_compressed_bytes, to_compressed_bytes
from hwq.quant.joint.projection import _Projector
from hwq.quant.joint.stream import position_marginal
from hwq.serialize import to_bytes
from hwq.workloads.train import evaluate

# --- sparse projection (0-1 knapsack) -------------------------------------------------------


def test_knapsack_keeps_top_scores_within_budget():
    # scores w^2/bits: 4.5, 0.5, 0.125 | 4.0, 2.25 -> order 3.0, 2.0, 1.5, -1.0, 0.5
    weights = [np.array([3.0, -1.0, 0.5]), np.array([2.0, 1.5])]
    bits = [2, 1]
    expect = {
        1: ([False, False, False], [False, False]),   # 3.0 costs 2
        2: ([True, False, False], [False, False]),
        3: ([True, False, False], [True, False]),
        4: ([True, False, False], [True, True]),
        5: ([True, False, False], [True, True]),      # -1.0 (2 bits) does not fit in 1
        6: ([True, True, False], [True, True]),
        8: ([True, True, True], [True, True]),
        100: ([True, True, True], [True, True]),
    }
    for budget, (a, b) in expect.items():
        masks = knapsack_masks(weights, bits, budget)
        assert masks[0].tolist() == a and masks[1].tolist() == b, budget


def test_knapsack_keeps_the_longest_prefix_only():
    # scores 3.0, 1.33, 1.0: after 3.0 (3 bits) the 2.0 (3 bits) does not fit in 4, and the
    # prefix stops there although the last weight (1 bit) would fit
    masks = knapsack_masks([np.array([3.0, 2.0]), np.array([1.0])], [3, 1], 4)
    assert [m.tolist() for m in masks] == [[True, False], [False]]


def test_knapsack_never_keeps_exact_zeros_and_keeps_shapes():
    masks = knapsack_masks([np.zeros((2, 3)), np.array([[0.0, 1.0]])], [1, 1], 100)
    assert masks[0].shape == (2, 3) and not masks[0].any()
    assert masks[1].tolist() == [[False, True]]


def test_layer_normalized_saliency_picks_the_expected_weights():
    # layer means of w^2: 5 and 0.025 -> importances 0.2 and 40; scores (1 bit each)
    # 1.8, 0.2 | 1.6, 0.4: keep 3.0 and 0.2 (w^2 alone would keep 3.0 and 1.0)
    weights = [np.array([3.0, 1.0]), np.array([0.2, 0.1])]
    imp = layer_importance(weights, "layer")
    assert imp == pytest.approx([0.2, 40.0])
    masks = knapsack_masks(weights, [1, 1], 2, importance=imp)
    assert [m.tolist() for m in masks] == [[True, False], [True, False]]
    plain = knapsack_masks(weights, [1, 1], 2)
    assert [m.tolist() for m in plain] == [[True, True], [False, False]]
    assert layer_importance(weights, "magnitude") == [1.0, 1.0]


def test_fisher_saliency_weights_each_weight_by_its_normalized_fisher():
    weights = [np.array([1.0, 1.0]), np.array([2.0, 0.5])]
    imp = layer_importance(weights, "fisher", [np.array([1.0, 3.0]), np.array([0.0, 4.0])])
    assert [a.tolist() for a in imp] == [[0.5, 1.5], [0.0, 2.0]]
    # scores 0.5, 1.5 | 0, 0.5 (2 bits for the second layer): 3 bits keep the 1.5 and a 0.5
    masks = knapsack_masks(weights, [1, 2], 3, importance=imp)
    assert [m.tolist() for m in masks] == [[True, True], [False, False]]
    with pytest.raises(ValueError, match="saliency must be one of"):
        layer_importance(weights, "taylor")
    with pytest.raises(ValueError, match="needs one Fisher estimate per layer"):
        layer_importance(weights, "fisher")


def test_distilled_gradient_equals_the_distillation_loss_gradient():
    torch.manual_seed(0)
    student, teacher = torch.nn.Linear(5, 4), torch.nn.Linear(5, 4)
    x, y = torch.randn(8, 5), torch.randint(0, 4, (8,))
    alpha, temp = 0.7, 3.0
    out = _Distilled(student, teacher, alpha, temp)(x)
    torch.testing.assert_close(out, student(x))
    torch.nn.functional.cross_entropy(out, y).backward()
    got = student.weight.grad.clone()
    student.zero_grad()
    s, t = student(x), teacher(x).detach()
    kl = torch.nn.functional.kl_div(torch.log_softmax(s / temp, 1), torch.softmax(t / temp, 1),
                                    reduction="batchmean")
    ((1 - alpha) * torch.nn.functional.cross_entropy(s, y) + alpha * temp ** 2 * kl).backward()
    torch.testing.assert_close(got, student.weight.grad)
    assert [p is student.weight or p is student.bias
            for p in _Distilled(student, teacher, alpha, temp).parameters()] == [True, True]


def test_knapsack_rejects_bad_costs():
    with pytest.raises(ValueError, match="Costs per weight must be finite and positive"):
        knapsack_masks([np.ones(2)], [0], 10)
    with pytest.raises(ValueError, match="Need one cost per layer: 1 layers, 2 costs"):
        knapsack_masks([np.ones(2)], [1, 2], 10)


# --- bit-width projection (multiple-choice knapsack) ----------------------------------------


def _brute_force(costs, dists, budget):
    best = None
    for choice in itertools.product(*(range(len(c)) for c in costs)):
        cost = sum(c[j] for c, j in zip(costs, choice, strict=True))
        if cost <= budget:
            d = sum(dd[j] for dd, j in zip(dists, choice, strict=True))
            if best is None or d < best:
                best = d
    return best


@pytest.mark.parametrize("solver", ["exact", "greedy"])
def test_choose_bits_hand_example(solver):
    # options (cost, distortion): layer 0 (1, 9) (2, 4) (3, 3); layer 1 (1, 5) (2, 2) (3, 0).
    # budget 4: (1, 1) costs 4 with distortion 6 -- the optimum (brute force below)
    costs, dists = [[1, 2, 3], [1, 2, 3]], [[9, 4, 3], [5, 2, 0]]
    assert choose_bits(costs, dists, 4, solver=solver) == [1, 1]
    assert _brute_force(costs, dists, 4) == 6
    assert choose_bits(costs, dists, 6, solver=solver) == [2, 2]
    assert choose_bits(costs, dists, 5, solver=solver) == [1, 2]
    assert choose_bits(costs, dists, 1, solver=solver) is None


def test_choose_bits_exact_equals_brute_force_on_random_instances():
    rng = np.random.default_rng(0)
    for _ in range(300):
        layers = int(rng.integers(1, 5))
        costs = [rng.integers(1, 20, size=int(rng.integers(1, 5))).tolist()
                 for _ in range(layers)]
        dists = [rng.integers(0, 50, size=len(c)).tolist() for c in costs]
        lo = sum(min(c) for c in costs)
        hi = sum(max(c) for c in costs)
        budget = int(rng.integers(lo, hi + 1))
        for solver in ("exact", "greedy"):
            choice = choose_bits(costs, dists, budget, solver=solver)
            assert sum(c[j] for c, j in zip(costs, choice, strict=True)) <= budget
            d = sum(dd[j] for dd, j in zip(dists, choice, strict=True))
            if solver == "exact":
                assert d == _brute_force(costs, dists, budget)
            else:  # the paper's greedy: feasible, never better than the optimum
                assert d >= _brute_force(costs, dists, budget)


def test_choose_bits_greedy_is_optimal_on_its_path_vertices():
    # convex options; upgrades by efficiency: L0 +2 (30/bit), L2 +1 (18), L1 +3 (13.3),
    # L0 +2 (10), L2 +1 (6), L1 +3 (3.3), L0 +2 (2.5), L2 +1 (1): at the budgets where the
    # greedy path has a vertex the LP relaxation is integral, so greedy is optimal there
    costs = [[2, 4, 6, 8], [3, 6, 9], [1, 2, 3, 4]]
    dists = [[100, 40, 20, 15], [60, 20, 10], [30, 12, 6, 5]]
    for budget in (6, 8, 9, 12, 14, 15, 18, 20, 21):
        choice = choose_bits(costs, dists, budget, solver="greedy")
        assert sum(c[j] for c, j in zip(costs, choice, strict=True)) == budget
        d = sum(dd[j] for dd, j in zip(dists, choice, strict=True))
        assert d == _brute_force(costs, dists, budget), budget


def test_choose_bits_rejects_unknown_solver():
    with pytest.raises(ValueError, match="solver must be one of exact, greedy, not 'lp'"):
        choose_bits([[1]], [[0]], 1, solver="lp")


# --- k-means with a fixed exact zero --------------------------------------------------------


def test_kmeans_zero_hand_example():
    r = kmeans_zero(np.array([-1.0, -0.9, 0.05, 0.8, 1.0]), 2)
    np.testing.assert_allclose(r.centroids, [0.0, -0.95, 0.9])
    assert r.labels.tolist() == [1, 1, 0, 2, 2]
    assert r.converged


@pytest.mark.parametrize("levels", [1, 2, 4, 8, 16])
def test_kmeans_zero_keeps_zero_and_converges(levels):
    rng = np.random.default_rng(levels)
    x = np.concatenate([rng.normal(0, 0.1, 600), rng.laplace(0, 0.3, 400)])
    r = kmeans_zero(x, levels, iterations=100)
    assert r.centroids[0] == 0.0 and r.centroids.shape == (levels + 1,)
    assert np.all(np.diff(r.distortion) <= 1e-12 * r.distortion[0])
    assert r.converged and r.distortion.size <= 101
    # the labels are nearest-centroid labels of the returned centroids
    best = np.min(np.abs(x[:, None] - r.centroids[None, :]), axis=1)
    np.testing.assert_array_equal(np.abs(x - r.centroids[r.labels]), best)
    # the centroids are the means of their clusters (a fixed point of Lloyd's algorithm)
    for j in range(1, levels + 1):
        if (r.labels == j).any():
            assert r.centroids[j] == pytest.approx(x[r.labels == j].mean(), rel=1e-12)


def test_kmeans_zero_rejects_bad_arguments():
    with pytest.raises(ValueError, match="K-means levels must be an integer >= 1, not 0"):
        kmeans_zero(np.ones(3), 0)
    with pytest.raises(ValueError, match=r"Initial centroids must have shape \(2,\)"):
        kmeans_zero(np.ones(3), 2, init=np.ones(3))


# --- size accounting ------------------------------------------------------------------------


def test_index_bits_hand_count():
    mask = np.zeros(16, bool)
    mask[[3, 5, 15]] = True          # zero runs 3, 1, 9
    # r * (nnz + sum floor(z / (2**r - 1)))
    assert [index_bits(mask, r) for r in (1, 2, 3, 4, 5)] == [
        1 * (3 + 3 + 1 + 9), 2 * (3 + 1 + 0 + 3), 3 * (3 + 0 + 0 + 1), 4 * 3, 5 * 3]
    assert index_bits(np.zeros(5, bool), 3) == 0


def _hand_network() -> dict[str, QuantizedWeight]:
    a = np.zeros((2, 8), np.int64)
    a[0, 3], a[0, 5], a[1, 7] = 5, -3, 5
    qa = QuantizedWeight(a, np.full(2, 0.1),
                         WeightSpec("codebook", bits=np.array(2), table=np.array([0, 5, -3])))
    qb = QuantizedWeight(np.zeros((1, 1, 2, 2), np.int64), np.ones(1),
                         WeightSpec("codebook", bits=np.array(1), table=np.array([0])))
    return {"fc": qa, "conv": qb}


def test_sparse_size_equals_hand_count():
    size = sparse_size(_hand_network(), biases={"fc": 2, "conv": 1})
    fc = size["layers"]["fc"]
    # fc: nonzeros at 3, 5, 15 (runs 3, 1, 9); levels {-3, 5}: 4-bit entries, 1-bit values;
    # positions: relative r = 3: 12, Elias-Fano L = 2: 6 + 3 + 3 = 12, Golomb-Rice k = 1:
    # 3 * 2 + (1 + 0 + 4) = 11 (the shortest); header ceil(log2(17)) + 2 + 5 + 8 + 4 = 24
    assert fc == {"weights": 16, "nnz": 3, "levels": 2, "entry_bits": 4, "value_width": 1,
                  "position_code": "golomb-rice", "position_param": 1, "value_bits": 3,
                  "index_bits": 11, "table_bits": 8, "header_bits": 24, "total_bits": 46,
                  "dense_ir_bits": 16 * 2 + 3 * 8}
    conv = size["layers"]["conv"]
    # all zero: only the nnz field, ceil(log2(5))
    assert conv["total_bits"] == 3 and conv["nnz"] == 0 and conv["index_bits"] == 0
    assert conv["dense_ir_bits"] == 4 * 1 + 1 * 8
    assert size["total_bits"] == 49 and size["weights"] == 20 and size["nnz"] == 3
    assert size["compression_ratio"] == 32 * 20 / 49
    assert size["dense_ir_bits"] == 56 + 12
    assert size["bias_bits"] == 3 * 32
    assert size["compression_ratio_with_biases"] == 32 * 23 / (49 + 96)


def test_budget_from_and_its_errors():
    assert budget_from(15248, compression=50) == 9758
    assert budget_from(10, budget_bits=77) == 77
    with pytest.raises(ValueError, match=r"^Joint compression must be a number > 1, not 0.5$"):
        budget_from(10, compression=0.5)
    with pytest.raises(ValueError, match="exactly one of compression and budget_bits, not both"):
        budget_from(10, compression=10, budget_bits=10)
    with pytest.raises(ValueError, match="exactly one of compression and budget_bits, not neither"):
        budget_from(10)
    with pytest.raises(ValueError, match="budget must be a positive integer number of bits, not 0"):
        budget_from(10, budget_bits=0)


# --- the method on digits -------------------------------------------------------------------


def test_quantize_joint_rejects_bad_options(digits_model, digits_data):
    folded = fold_batchnorm(digits_model)
    with pytest.raises(ValueError, match=r"^Joint compression must be a number > 1, not 0.5$"):
        quantize_joint(folded, digits_data, compression=0.5)
    with pytest.raises(ValueError, match="exactly one of compression and budget_bits"):
        quantize_joint(folded, digits_data)
    with pytest.raises(ValueError, match=r"Joint bits must be an integer in 1..7, not 8"):
        quantize_joint(folded, digits_data, compression=10, bits=8)
    # one nonzero per layer at its last position: headers (8, 13, 14, 11) + 19 each = 122,
    # one 8-bit table entry and a 1-bit value each = 36, relative indices of r = 8, 13, 14, 11
    # bits = 46: 204 bits, 32 * 15248 / 204 = 2391.8x
    with pytest.raises(ValueError, match=r"^Joint budget of 50 bits \(9758\.7x\) cannot hold "
                                         r"one nonzero weight per layer: the minimum is 204 "
                                         r"bits \(2391\.8x\); allow more bits or less "
                                         r"compression$"):
        quantize_joint(folded, digits_data, budget_bits=50, progress=False)
    with pytest.raises(ValueError, match="Joint saliency must be one of"):
        quantize_joint(folded, digits_data, compression=10, saliency="taylor")
    with pytest.raises(ValueError, match=r"Joint distill must be a number in 0..1, not 1.5"):
        quantize_joint(folded, digits_data, compression=10, distill=1.5)


def test_annealed_budget_falls_geometrically_to_the_budget(digits_reference, digits_data):
    folded = fold_batchnorm(digits_reference)
    q = quantize_joint(folded, digits_data, compression=50, epochs=4, finetune_epochs=0,
                       anneal_epochs=3, anneal_from=8, distill=0, seed=0, progress=False)
    budget = q.info["budget_bits"]
    # epoch e's projection (after e epochs; e = 1..4) at budget * 8 ** (1 - e / 3)
    assert [h["budget"] for h in q.info["history"]] == [int(budget * 4.0), int(budget * 2.0),
                                                          budget, budget]
    assert [h["epoch"] for h in q.info["history"]] == [1, 2, 3, 4]
    for h in q.info["history"][:2]:                   # more weights kept early
        assert sum(h["nnz"]) > sum(q.info["history"][-1]["nnz"])
    assert sparse_size(q)["total_bits"] == q.info["total_bits"] <= budget
    assert q.info["options"]["anneal_epochs"] == 3
    with pytest.raises(ValueError, match=r"anneal epochs must be at most the ADMM epochs "
                                         r"\(4\), not 5"):
        quantize_joint(folded, digits_data, compression=50, epochs=4, anneal_epochs=5)
    with pytest.raises(ValueError, match=r"anneal start must be > 1 \(times the budget\), "
                                         r"not 0.5"):
        quantize_joint(folded, digits_data, compression=50, anneal_epochs=2, anneal_from=0.5)


@pytest.mark.parametrize("saliency", ["layer", "fisher"])
def test_joint_saliency_options_meet_the_budget(digits_reference, digits_data, saliency):
    folded = fold_batchnorm(digits_reference)
    q = quantize_joint(folded, digits_data, compression=50, epochs=2, finetune_epochs=0,
                       saliency=saliency, distill=0, seed=0, progress=False)
    assert sparse_size(q)["total_bits"] == q.info["total_bits"] <= q.info["budget_bits"]
    assert q.info["options"]["saliency"] == saliency


@pytest.fixture(scope="module")
def joint_run(digits_reference, digits_data):
    folded = fold_batchnorm(digits_reference)
    torch.manual_seed(0)
    qweights = quantize_joint(folded, digits_data, compression=20, epochs=6,
                              finetune_epochs=4, seed=0, progress=False)
    return folded, qweights


def test_joint_meets_the_budget_with_codebook_layers(joint_run):
    folded, q = joint_run
    info = q.info
    assert info["budget_bits"] == math.floor(32 * 15248 / 20)
    assert set(q) == {name for name, _ in weight_layers(folded)}
    recount = sparse_size(q)
    assert recount["total_bits"] == info["total_bits"] <= info["budget_bits"]
    # values + indices alone (the sum bits * nnz + indices) fit too
    assert recount["value_bits"] + recount["index_bits"] <= info["budget_bits"]
    assert info["compression_ratio"] >= 20
    for name, qw in q.items():
        layer = info["layers"][name]
        assert qw.spec.kind == "codebook" and qw.spec.table[0] == 0
        assert layer["nnz"] == int(np.count_nonzero(qw.values))
        assert layer["value_width"] <= info["bits"][name]
        assert qw.spec.max_bits() == max(1, math.ceil(math.log2(layer["levels"] + 1)))


def test_joint_network_runs_on_golden_and_bit_serial_layout(joint_run, digits_data):
    folded, q = joint_run
    fq = fake_quant_model(folded, q, digits_data.x_train)
    network = fq.to_network()
    network.validate()
    x = quantize_input(digits_data.x_test.numpy(), network.input_scale, network.act_bits)
    golden = run(network, x)
    np.testing.assert_array_equal(golden, fq.to_int(digits_data.x_test).numpy())
    accuracy = 100 * float((golden.argmax(axis=1) == digits_data.y_test.numpy()).mean())
    assert accuracy >= 90.0
    assert evaluate(folded, digits_data.x_test, digits_data.y_test) >= 90.0
    program = compile_layout(network, CoreConfig(pe="bit_serial", weight_bits=8))
    np.testing.assert_array_equal(execute(program, x[:64]), golden[:64])
    # the compressed file: its weight stream is the reported size, and it loads as the network
    data, nbits, codes = to_compressed_bytes(network)
    assert nbits == q.info["total_bits"]
    assert {n: c.total_bits for n, c in codes.items()} == {
        op.name: q.info["layers"][name]["total_bits"]
        for op, name in zip([o for o in network.ops if hasattr(o, "weight")], q, strict=True)}
    assert to_bytes(from_compressed_bytes(data)) == to_bytes(network)


# --- no dead networks -------------------------------------------------------------------------


def test_chain_keeps_a_live_path():
    # layer 0: 2 out channels x 1 input x 2 taps; layer 1 (linear, 4 inputs = 2 channels x 2)
    proj = _Projector(100, 1, 3, table_bits=8, solver="exact", rounds=1, kmeans_iterations=1,
                      snap=False)
    conv = torch.nn.Conv2d(1, 2, (1, 2))
    fc = torch.nn.Linear(4, 3)
    proj.links = chain_links([conv, fc])
    assert proj.links[0][1] is None
    np.testing.assert_array_equal(proj.links[1][1], [0, 0, 1, 1] * 3)
    # best of layer 0: index 3 (out channel 1); layer 1's best reading channel 1 is index 7,
    # not its global best 0 (which reads channel 0)
    score = np.concatenate([[0.1, 0.2, 0.3, 0.9], [5.0, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1, 0.4,
                                                   0.1, 0.1, 0.1, 0.1]])
    assert proj.chain(score, [0, 4], [4, 12]) == [3, 4 + 7]


def test_tight_feasible_budget_keeps_every_layer_alive(digits_reference, digits_data):
    # 1000 bits: 488x on digits, 5 times the 204-bit minimum (one nonzero per layer); the
    # relative-index code returned layers 7 and 12 constant here (a 9.6 % network)
    folded = fold_batchnorm(digits_reference)
    q = quantize_joint(folded, digits_data, budget_bits=1000, epochs=10, finetune_epochs=5,
                       seed=0, progress=False)
    assert q.info["total_bits"] <= 1000
    assert all(layer["nnz"] > 0 for layer in q.info["layers"].values())
    assert constant_layers(folded, digits_data.x_test) == []


@pytest.mark.slow
def test_lenet5_at_1000x_does_not_collapse(tmp_path):
    # issue 25: 1000x on LeNet-5 used to return a 10 % network with every layer empty
    from hwq.quant.api import quantize
    from hwq.quant.joint.compressed import save_compressed

    result = quantize("lenet5", "joint", bits=None, compression=1000, progress=False)
    info = result.info
    assert info["total_bits"] <= info["budget_bits"] == math.floor(32 * 430500 / 1000)
    assert all(layer["nnz"] > 0 for layer in info["layers"].values())
    assert result.accuracy >= result.fp32_accuracy - 3.0
    _, nbits, _ = save_compressed(result.network, tmp_path / "lenet5.hwqz")
    assert nbits == info["total_bits"]


def test_sparse_projection_fills_the_budget_without_a_position_floor():
    # LeNet-5's shapes at 1000x (13,776 bits): the relative index's floor (an escape every
    # 2**r - 1 positions, ~12,500 bits for fc1 at r = 8) left fc1 empty; priced at the
    # marginal bits of its shortest code, every layer gets nonzeros and the exact size ends
    # within one nonzero's cost of the budget
    rng = np.random.default_rng(0)
    numels = [500, 25_000, 400_000, 5_000]
    xs = [rng.normal(0, s, n) for n, s in zip(numels, [0.1, 0.05, 0.05, 0.1], strict=True)]
    budget = math.floor(32 * sum(numels) / 1000)
    proj = _Projector(budget, 1, 7, table_bits=8, solver="exact", rounds=1,
                      kmeans_iterations=1, snap=False)
    bits = [3, 3, 3, 3]
    nnz = proj.initial_nnz(numels, bits)
    masks = proj.sparse(xs, bits, nnz)
    sizes = [layer_size(m, value_width=3, levels=8) for m in masks]
    used = sum(s.total_bits for s in sizes)
    # the projector's price of a nonzero: value bits + marginal position bits at the
    # network's density
    density = sum(nnz) / sum(numels)
    costs = [3 + position_marginal(max(1, round(density * n)), n) for n in numels]
    assert budget - max(costs) <= used <= budget
    assert all(s.nnz > 0 for s in sizes)
    assert sizes[2].nnz > 100 and sizes[2].position_code == "golomb-rice"


def test_weights_reading_an_empty_channel_are_not_kept():
    # conv (2 out channels x 2 taps) -> linear (4 inputs = 2 channels x 2 positions, 1 out);
    # layer 0's channel 1 has zero weights, so it is never kept and its output is the
    # constant ReLU(bias): the linear weights on its inputs (2, 3) score best but buy nothing
    conv, fc = torch.nn.Conv2d(1, 2, (1, 2)), torch.nn.Linear(4, 1)
    xs = [np.array([1.0, 0.9, 0.0, 0.0]), np.array([0.5, 0.4, 3.0, 2.0])]
    for prune, expect in ((False, [True, True, True, True]), (True, [True, True, False, False])):
        proj = _Projector(10_000, 1, 1, table_bits=8, solver="exact", rounds=1,
                          kmeans_iterations=1, snap=False)
        proj.links = chain_links([conv, fc])
        proj.prune_dead_inputs = prune
        masks = proj.sparse(xs, [1, 1], [2, 2])
        np.testing.assert_array_equal(masks[0], [True, True, False, False])
        np.testing.assert_array_equal(masks[1], expect)
