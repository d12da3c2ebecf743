"""SLQ/MLQ: k-means with a fixed zero cluster, loss-based partition, integer codebooks."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from torch import nn

from hwq.golden.formats import CodebookFormat
from hwq.quant import kmeans, slq
from hwq.quant.base import fold_batchnorm, weight_layers
from hwq.quant.kmeans import assign, kmeans_1d, pot_ladder
from hwq.quant.slq import (
    ClusterState,
    cluster_count,
    codebook_weight,
    group_counts,
    network_cluster_losses,
    quantize_mlq,
    quantize_slq,
    rank_clusters,
    weight_cluster_losses,
)
from hwq.workloads import train


@pytest.fixture
def folded(digits_reference) -> nn.Sequential:
    return fold_batchnorm(digits_reference)


# --- k-means --------------------------------------------------------------------------------


@pytest.mark.parametrize(("bits", "k"), [(2, 3), (3, 5), (4, 9), (5, 17), (8, 129)])
def test_cluster_count(bits, k):
    assert cluster_count(bits) == k


def test_pot_ladder_values():
    assert pot_ladder(0.3, 9).tolist() == [0.0, 0.25, -0.25, 0.125, -0.125,
                                           0.0625, -0.0625, 0.03125, -0.03125]
    assert pot_ladder(0.25, 3).tolist() == [0.0, 0.25, -0.25]  # 2**floor(log2 0.25) = 0.25
    assert pot_ladder(float(np.nextafter(0.25, 0)), 3).tolist() == [0.0, 0.125, -0.125]
    assert pot_ladder(5.0, 5).tolist() == [0.0, 4.0, -4.0, 2.0, -2.0]


def test_kmeans_hand_computed():
    x = np.array([-1.0, -0.75, 0.0625, 0.125, 0.75, 1.0])
    c, labels = kmeans_1d(x, np.array([0.0, 0.5, -0.5]))
    assert c.tolist() == [0.0, 0.875, -0.875]
    assert labels.tolist() == [2, 2, 0, 0, 1, 1]


def test_kmeans_zero_cluster_stays_zero():
    x = np.array([0.1, 0.2, 0.25, 2.0, -2.0])  # the zero cluster's mean is 0.18, not 0
    c, labels = kmeans_1d(x, np.array([0.0, 1.0, -1.0]), iterations=10)
    assert c[0] == 0.0
    assert labels.tolist() == [0, 0, 0, 1, 2]
    assert c[1:].tolist() == [2.0, -2.0]


def test_kmeans_frozen_centroids_and_fixed_labels_do_not_move():
    x = np.array([0.1, 0.9, 1.1, 1.2, -1.0, -1.4])
    init = np.array([0.0, 0.7, -0.5])
    c, labels = kmeans_1d(x, init, frozen=[False, True, False],
                          fixed=[-1, -1, -1, -1, -1, 1])  # x[5] stays in cluster 1
    assert c[1] == 0.7 and c[0] == 0.0
    assert c[2] == -1.0  # mean of the one free weight near it
    assert labels.tolist() == [0, 1, 1, 1, 2, 1]


def test_assign_ties_go_to_the_lower_index():
    assert assign(np.array([0.5, -0.5]), np.array([0.0, 1.0, -1.0])).tolist() == [0, 0]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kmeans_1d(np.ones(3), np.array([0.5, 1.0])),
         r"Centroid 0 must be exactly 0 \(the zero cluster\), not \[0.5\]"),
        (lambda: pot_ladder(1.0, 4), "Cluster count must be an odd integer >= 3, not 4"),
        (lambda: kmeans_1d(np.ones(3), np.zeros(3), iterations=-1),
         "Lloyd iterations must be an integer >= 0, not -1"),
    ],
)
def test_kmeans_rejects(call, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        call()


# --- groups, losses, ranking ----------------------------------------------------------------


def test_group_counts():
    assert group_counts(17, (0.25, 0.5, 0.75, 0.875, 1)) == [4, 8, 12, 14, 16]
    assert group_counts(9, (0.25, 0.5, 0.75, 0.875, 1)) == [2, 4, 6, 7, 8]
    assert group_counts(5, (0.25, 0.5, 0.75, 0.875, 1)) == [1, 2, 3, 4]
    assert group_counts(3, (0.5, 1)) == [1, 2]


def _toy():
    """A 3-input linear classifier whose third input is always 0."""
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[2.0, 0.0, 3.0], [0.0, 2.0, 0.0]]))
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 1])
    # cluster 1 (centroid 1.0) holds w[0,2] = 3: large weight error, no effect on the loss;
    # cluster 2 (centroid 1.8) holds w[0,0] = 2: small weight error, raises the loss
    state = ClusterState(np.array([0.0, 1.0, 1.8, 1.9]), np.array([True, False, False, False]),
                         np.full(6, -1))
    labels = np.array([2, 0, 1, 0, 3, 0])
    return model, x, y, state, labels


def test_network_loss_ranks_the_larger_loss_cluster_first():
    model, x, y, state, labels = _toy()
    before = model[0].weight.detach().clone()
    losses = network_cluster_losses(model, model[0].weight, state, labels, [1, 2, 3], x, y)
    assert torch.equal(model[0].weight, before)  # restored exactly
    assert losses[0] == 0.0  # the weight on the always-zero input does not matter
    assert losses[1] > losses[2] > 0  # 2 -> 1.8 on the class-0 logit, 2 -> 1.9 on class 1
    assert rank_clusters([1, 2, 3], losses, "descending") == [2, 3, 1]
    assert rank_clusters([1, 2, 3], losses, "ascending") == [1, 3, 2]
    # the weight-space loss orders them the other way round
    werr = weight_cluster_losses(model[0].weight.detach().numpy(), state, labels, [1, 2, 3])
    np.testing.assert_allclose(werr, [4.0, 0.04, 0.01])
    assert rank_clusters([1, 2, 3], werr, "descending") == [1, 2, 3]


# --- codebook -------------------------------------------------------------------------------


def test_codebook_weight_table():
    c = np.array([0.0, 0.5, -0.5, 0.25, -0.1, 0.001])
    labels = np.array([0, 1, 2, 3, 3, 4, 5, 0])
    q = codebook_weight(c, labels, (2, 4))
    # scale 0.5/127; entries 127, -127, 63.5 -> 64 (half to even), -25.4 -> -25, 0.254 -> 0
    assert q.scale.tolist() == [0.5 / 127] * 2
    assert q.values.tolist() == [[0, 127, -127, 64], [64, -25, 0, 0]]
    assert q.spec.table.tolist() == [0, 64, -127, -25, 127]  # 0, then by use, ties by value
    assert int(q.spec.bits) == 3 and q.spec.table_bits == 8
    CodebookFormat(3, table=tuple(q.spec.table.tolist()), table_bits=8).validate(q.values)


# --- SLQ ------------------------------------------------------------------------------------


def _record(store: list):
    def on_step(stage, model, states):
        weights = {n: m.weight.detach().clone() for n, m in weight_layers(model)}
        store.append((stage, states, weights))
    return on_step


def test_slq_stages_freeze_clusters_and_weights(folded, digits_data):
    stages: list = []
    qweights = quantize_slq(folded, digits_data, bits=4, epochs=1, loss="weight",
                            progress=False, num_threads=1, on_step=_record(stages))
    assert [s for s, _, _ in stages] == [0, 1, 2, 3, 4]
    expected_frozen = [2, 4, 6, 7, 8]  # nonzero clusters of k = 9
    for i, (_, states, weights) in enumerate(stages):
        later = stages[i + 1:]
        for name, st in states.items():
            assert st.centroids.size == 9 and st.centroids[0] == 0.0
            assert int(st.frozen[1:].sum()) == expected_frozen[i] and st.frozen[0]
            mask = torch.from_numpy(st.mask.reshape(weights[name].shape))
            # quantized weights sit on their (float32) centroid
            np.testing.assert_array_equal(weights[name].numpy().reshape(-1)[st.mask],
                                          st.centroids[st.labels[st.mask]].astype(np.float32))
            for _, states2, weights2 in later:
                st2 = states2[name]
                np.testing.assert_array_equal(st2.centroids[st.frozen], st.centroids[st.frozen])
                assert st2.frozen[st.frozen].all()
                np.testing.assert_array_equal(st2.labels[st.mask], st.labels[st.mask])
                assert torch.equal(weights2[name][mask], weights[name][mask])
    for name, module in weight_layers(folded):
        q = qweights[name]
        assert q.spec.kind == "codebook" and q.spec.table_bits == 8
        assert q.spec.table[0] == 0 and len(set(q.spec.table.tolist())) == q.spec.table.size
        assert q.spec.table.size <= 9 and int(q.spec.bits) == 4
        assert np.abs(q.spec.table).max() == 127
        np.testing.assert_array_equal(module.weight.detach().numpy(),
                                      q.dequantize().astype(np.float32))


def test_slq_weight_loss_picks_the_largest_error_clusters(folded, digits_data):
    """Stage 0 quantizes the zero cluster and the 4 clusters of largest weight error."""
    weights = {n: m.weight.detach().double().numpy().reshape(-1)
               for n, m in weight_layers(folded)}
    stages: list = []
    quantize_slq(folded, digits_data, bits=5, epochs=0, loss="weight", progress=False,
                 on_step=_record(stages))
    for name, w in weights.items():
        init = pot_ladder(float(np.abs(w).max()), 17)
        c, labels = kmeans_1d(w, init, frozen=np.eye(17, dtype=bool)[0],
                              fixed=np.full(w.size, -1))
        state = ClusterState(c, np.eye(17, dtype=bool)[0], np.full(w.size, -1))
        errors = weight_cluster_losses(w, state, labels, list(range(1, 17)))
        top = set(rank_clusters(list(range(1, 17)), errors, "descending")[:4])
        frozen = stages[0][1][name].frozen
        assert set(np.flatnonzero(frozen[1:]) + 1) == top


def test_slq_4bit_keeps_accuracy(folded, digits_data):
    """A real (short) run with the network loss: 4-bit SLQ stays close to fp32 (99.3 %)."""
    qweights = quantize_slq(folded, digits_data, bits=4, epochs=2, loss_samples=256,
                            progress=False)
    assert all(int(q.spec.bits) == 4 and q.spec.table.size == 9 for q in qweights.values())
    assert train.evaluate(folded, digits_data.x_test, digits_data.y_test) >= 98.0


def _check_channel_codebook(q, weight, unit):
    """One shared table per layer, the channel's unit in its scale, the weights exact."""
    ratio = q.scale / unit
    # float scales, not integers: scale[c] = s * unit[c] is one rounded product, so
    # scale[c] / unit[c] recovers s only to an ulp; values and weights are checked exactly
    assert np.allclose(ratio, ratio[0], rtol=1e-12, atol=0)
    assert np.isin(q.values, q.spec.table).all()
    np.testing.assert_array_equal(weight.detach().numpy(), q.dequantize().astype(np.float32))


def test_channel_scale_units():
    w = torch.tensor([[[[0.5]], [[-2.0]]], [[[0.0]], [[0.0]]], [[[0.25]], [[0.125]]]])
    assert slq.channel_scale(w, "channel").tolist() == [2.0, 1.0, 0.25]
    assert slq.channel_scale(w, "layer") is None
    with pytest.raises(ValueError, match=r"^Codebook scale must be one of \('layer', "
                                         r"'channel'\), not 'row'$"):
        slq.channel_scale(w, "row")


def test_slq_channel_scale_clusters_each_channel_in_its_units(folded, digits_data,
                                                              digits_reference):
    """Frozen weights sit on ``centroid * unit[c]``; one table, per-channel scales."""
    units = {n: np.abs(m.weight.detach().double().reshape(m.weight.shape[0], -1).numpy())
             .max(axis=1) for n, m in weight_layers(folded)}
    stages: list = []
    qweights = quantize_slq(folded, digits_data, bits=3, epochs=1, loss="weight",
                            scale="channel", progress=False, on_step=_record(stages))
    for _, states, weights in stages:
        for name, st in states.items():
            np.testing.assert_array_equal(st.channel_scale, units[name])
            unit = np.repeat(units[name], st.labels.size // units[name].size)
            assert np.abs(st.centroids).max() <= 1.0  # the ladder starts at 2**floor(log2 1)
            np.testing.assert_array_equal(
                weights[name].numpy().reshape(-1)[st.mask],
                (st.centroids[st.labels[st.mask]] * unit[st.mask]).astype(np.float32))
    for name, module in weight_layers(folded):
        q = qweights[name]
        assert int(q.spec.bits) == 3 and q.spec.table.size <= 5
        _check_channel_codebook(q, module.weight, units[name])
    # the per-layer default on the same model differs: one scale for every channel
    layer = quantize_slq(fold_batchnorm(digits_reference), digits_data, bits=3, epochs=0,
                         loss="weight", progress=False)
    assert all(np.unique(q.scale).size == 1 for q in layer.values())
    assert any(np.unique(q.scale).size > 1 for q in qweights.values())


def test_slq_channel_scale_network_loss_snaps_in_units(folded, digits_data):
    """The network-loss trial of a cluster sets its weights to ``c_j * unit`` and restores them."""
    name, module = weight_layers(folded)[0]
    unit = slq.channel_scale(module.weight, "channel")
    w = module.weight.detach().double().reshape(-1).numpy()
    state = ClusterState(np.array([0.0, 0.5, -0.5]), np.array([True, False, False]),
                         np.full(w.size, -1), unit)
    labels = kmeans.assign(w / state.unit, state.centroids)
    before = module.weight.detach().clone()
    x, y = digits_data.x_train[:64], digits_data.y_train[:64]
    losses = network_cluster_losses(folded, module.weight, state, labels, [1, 2], x, y)
    assert torch.equal(module.weight, before)
    loss_fn = nn.CrossEntropyLoss()
    folded.eval()
    with torch.no_grad():
        base = float(loss_fn(folded(x), y))
        for j, got in zip([1, 2], losses, strict=True):
            trial = before.clone().reshape(-1)
            sel = torch.from_numpy(labels == j)
            trial[sel] = torch.from_numpy(0.5 * (1 if j == 1 else -1) * state.unit)[sel].float()
            module.weight.copy_(trial.reshape(before.shape))
            assert float(loss_fn(folded(x), y)) - base == got
            module.weight.copy_(before)


# --- MLQ ------------------------------------------------------------------------------------


def test_mlq_is_ternary_layer_by_layer(folded, digits_data):
    stages: list = []
    qweights = quantize_mlq(folded, digits_data, epochs=1, progress=False, num_threads=1,
                            on_step=_record(stages))
    names = [n for n, _ in weight_layers(folded)]
    assert [s for s, _, _ in stages] == list(range(2 * len(names)))
    for index, name in enumerate(names):
        _, states, _ = stages[2 * index]  # +/- clusters of this layer quantized, zero free
        st = states[name]
        assert set(np.unique(st.labels).tolist()) == {-1, 1, 2}
        assert all((states[n].labels == -1).all() for n in names[index + 1:])
        assert all((states[n].labels >= 0).all() for n in names[:index])
        _, states, _ = stages[2 * index + 1]  # the layer fully quantized
        assert (states[name].labels >= 0).all()
    for name in names:
        q = qweights[name]
        assert sorted(np.unique(q.values).tolist()) == sorted(q.spec.table.tolist())
        assert q.spec.table.size == 3 and q.spec.table[0] == 0 and int(q.spec.bits) == 2
        assert (q.spec.table[1:] != 0).all()


def test_mlq_channel_scale(folded, digits_data):
    units = {n: slq.channel_scale(m.weight, "channel") for n, m in weight_layers(folded)}
    qweights = quantize_mlq(folded, digits_data, epochs=1, scale="channel", progress=False)
    for name, module in weight_layers(folded):
        q = qweights[name]
        assert q.spec.table.size == 3 and int(q.spec.bits) == 2
        _check_channel_codebook(q, module.weight, units[name])


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, d: quantize_slq(m, d, bits=1), "SLQ bit width must be an integer in 2..8, not 1"),
        (lambda m, d: quantize_slq(m, d, bits=9), "SLQ bit width must be an integer in 2..8, not 9"),
        (lambda m, d: quantize_slq(m, d, bits=4, loss="hessian"),
         r"SLQ loss must be one of \('network', 'weight'\), not 'hessian'"),
        (lambda m, d: quantize_slq(m, d, bits=4, order="random"),
         r"SLQ cluster order must be one of \('descending', 'ascending'\), not 'random'"),
        (lambda m, d: quantize_slq(m, d, bits=4, schedule=(0.5, 0.5, 1)),
         r"SLQ schedule must be an increasing list of portions in \(0, 1\] ending in 1, "
         r"not \(0.5, 0.5, 1\)"),
        (lambda m, d: quantize_slq(m, d, bits=4, epochs=1.5),
         "SLQ epochs per step must be an integer >= 0, not 1.5"),
        (lambda m, d: quantize_mlq(m, d, bits=3), "MLQ is ternary: its bit width must be 2, not 3"),
        (lambda m, d: quantize_slq(m, d, bits=4, scale="row"),
         r"SLQ codebook scale must be one of \('layer', 'channel'\), not 'row'"),
        (lambda m, d: quantize_mlq(m, d, scale=None),
         r"MLQ codebook scale must be one of \('layer', 'channel'\), not None"),
        (lambda m, d: quantize_mlq(m, d, recluster="never"),
         r"MLQ recluster must be one of \('refit', 'assign'\), not 'never'"),
    ],
)
def test_rejects(folded, digits_data, call, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        call(folded, digits_data)


@pytest.mark.parametrize(("module", "count"), [(kmeans, 4), (slq, 7)])
def test_doctests_pass(module, count):
    result = doctest.testmod(module)
    assert result.attempted >= count and result.failed == 0
