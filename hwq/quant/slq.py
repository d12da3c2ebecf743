"""SLQ and MLQ: single- and multi-level weight-sharing quantization (Xu et al., AAAI 2018).

Each conv/linear layer's weights are clustered by 1-D k-means (:mod:`hwq.quant.kmeans`) into
``k = 2**(b-1) + 1`` shared values: a zero cluster fixed at 0 and ``2**(b-2)`` positive and
negative centroids initialized on the power-of-two ladder ``+/-2**floor(log2 max|w|) / 2**(i-1)``
(10 Lloyd iterations). The clusters are quantized group by group, ranked by the loss their
quantization causes (larger loss first: small-loss clusters are the easier ones to recover by
retraining); quantized weights are frozen (masked SGD) and so are their centroids in later
k-means runs, the rest are retrained.

* **SLQ** partitions by width only: every stage quantizes the next group of clusters of
  every layer.
* **MLQ** is ternary (``k = 3``: ``{0, +c, -c}``) and also partitions by depth: layer by layer,
  first the +/- clusters of the layer are quantized and its zero-cluster weights retrained
  (with every later layer), then the layer is re-clustered fully and frozen.

The result is the hardware's ``CODEBOOK`` format: per layer, the float centroids become a table
of 8-bit integers (``scale = max|centroid| / 127``, ``entry = round(centroid / scale)``, 0 first),
each weight is its cluster's integer entry, and the index width is
``ceil(log2(table size))``: ``b`` bits for SLQ at ``b`` bits (``2**(b-1) + 1`` entries), 2 for MLQ.

``scale="channel"`` (an hwq option; the paper shares values per layer, the default
``"layer"``) clusters each output channel's weights divided by the channel's largest ``|w|``
at the start: the layer keeps one table of shared values, and the per-channel factor joins
the weight scale, which the integer network folds into its per-channel requantization (no
hardware cost). It is for networks whose channels differ in range by orders of magnitude
(BatchNorm-folded ones), where a per-layer codebook of a few values zeroes whole channels.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hwq.ir import WeightSpec
from hwq.quant.base import QuantizedWeight, weight_layers
from hwq.quant.inq import (
    check_bits,
    check_schedule,
    check_training,
    masked_fit,
    step_seed,
    torch_threads,
    training_tensors,
)
from hwq.quant.kmeans import kmeans_1d, pot_ladder

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "DEFAULT_SCHEDULE",
    "LOSSES",
    "ORDERS",
    "RECLUSTER",
    "SCALES",
    "ClusterState",
    "channel_scale",
    "cluster_count",
    "codebook_weight",
    "group_counts",
    "network_cluster_losses",
    "quantize_mlq",
    "quantize_slq",
    "rank_clusters",
    "weight_cluster_losses",
]

#: Accumulated portions of each layer's nonzero clusters quantized per stage; with the zero
#: cluster in the first group this is the official AlexNet 5-bit staging (zero + 2 pairs,
#: then 2, 2, 1, 1 pairs).
DEFAULT_SCHEDULE: tuple[float, ...] = (0.25, 0.5, 0.75, 0.875, 1.0)
#: Retraining epochs after each stage but the last.
DEFAULT_EPOCHS = 8
#: Learning rate at the start of each retraining stage (the digits training's peak rate).
DEFAULT_LR = 0.05
#: How a cluster's quantization loss is measured.
LOSSES: tuple[str, ...] = ("network", "weight")
#: Which clusters go first: larger loss ("descending", the paper's) or smaller.
ORDERS: tuple[str, ...] = ("descending", "ascending")
#: How MLQ re-clusters a layer after retraining its zero cluster.
RECLUSTER: tuple[str, ...] = ("refit", "assign")
#: What the shared values are relative to: the layer (the paper) or each output channel.
SCALES: tuple[str, ...] = ("layer", "channel")
#: Entry width of the integer codebook tables.
TABLE_BITS = 8
#: SLQ bit widths: ``2**(b-1) + 1`` clusters need ``b``-bit indices; CODEBOOK allows 1..8.
BITS = (2, 8)


@dataclass
class ClusterState:
    """One layer's clustering.

    Attributes
    ----------
    centroids : np.ndarray
        float64, shape ``(k,)``; ``centroids[0] == 0``.
    frozen : np.ndarray
        bool, shape ``(k,)``: the cluster is quantized (its centroid no longer moves).
    labels : np.ndarray
        int64, one per weight (flattened): its cluster if quantized, else ``-1``.
    channel_scale : np.ndarray or None
        float64, one per output channel: the centroids are in units of it (a weight of
        cluster ``j`` in channel ``c`` is ``centroids[j] * channel_scale[c]``); ``None`` for
        the paper's per-layer values (a unit scale).
    """

    centroids: np.ndarray
    frozen: np.ndarray
    labels: np.ndarray
    channel_scale: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """Quantized (frozen) weights, flattened."""
        return self.labels >= 0

    @property
    def unit(self) -> np.ndarray:
        """Each weight's unit (flattened): its channel's scale, or 1.0."""
        if self.channel_scale is None:
            return np.ones(self.labels.size)
        return np.repeat(self.channel_scale, self.labels.size // self.channel_scale.size)

    def copy(self) -> ClusterState:
        scale = None if self.channel_scale is None else self.channel_scale.copy()
        return ClusterState(self.centroids.copy(), self.frozen.copy(), self.labels.copy(),
                            scale)


def channel_scale(weight: torch.Tensor, scale: str) -> np.ndarray | None:
    """The unit of each output channel for ``scale``: ``None`` for ``"layer"``, else max ``|w|``.

    A channel of zeros gets 1.0.

    >>> channel_scale(torch.tensor([[0.5, -2.0], [0.0, 0.0]]), "channel").tolist()
    [2.0, 1.0]
    """
    if scale not in SCALES:
        raise ValueError(f"Codebook scale must be one of {SCALES}, not {scale!r}")
    if scale == "layer":
        return None
    top = np.abs(weight.detach().double().reshape(weight.shape[0], -1).numpy()).max(axis=1)
    return np.where(top > 0, top, 1.0)


StageCallback = Callable[[int, nn.Module, dict[str, ClusterState]], None]


def cluster_count(bits: int) -> int:
    """SLQ's clusters at ``b`` bits: ``k = 2**(b-1) + 1`` (zero and ``2**(b-2)`` pairs).

    >>> [cluster_count(b) for b in (2, 3, 4, 5)]
    [3, 5, 9, 17]
    """
    return (1 << (check_bits(bits, "SLQ", *BITS) - 1)) + 1


def group_counts(k: int, schedule: Sequence[float]) -> list[int]:
    """Accumulated numbers of nonzero clusters quantized per stage.

    ``ceil(sigma * (k - 1))`` for each portion ``sigma`` of ``schedule``, repeats dropped
    (the zero cluster joins the first group on top of these).

    >>> group_counts(17, DEFAULT_SCHEDULE), group_counts(3, DEFAULT_SCHEDULE)
    ([4, 8, 12, 14, 16], [1, 2])
    """
    counts: list[int] = []
    for s in schedule:
        c = math.ceil(s * (k - 1) - 1e-9)
        if not counts or c > counts[-1]:
            counts.append(c)
    return counts


# --- cluster losses and ranking -------------------------------------------------------------


def weight_cluster_losses(
    w: np.ndarray, state: ClusterState, labels: np.ndarray, candidates: Sequence[int]
) -> np.ndarray:
    """Weight-space error of snapping each candidate cluster: ``sum_i (w_i - c_j u_i)**2``.

    Over the free weights ``i`` that ``labels`` puts in cluster ``j``; ``u_i`` is the weight's
    unit (:attr:`ClusterState.unit`, 1 for per-layer values).
    """
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    free = ~state.mask
    unit = state.unit
    out = []
    for j in candidates:
        sel = free & (labels == j)
        out.append(float(np.sum((w[sel] - state.centroids[j] * unit[sel]) ** 2)))
    return np.array(out)


@torch.no_grad()
def network_cluster_losses(
    model: nn.Module,
    weight: torch.Tensor,
    state: ClusterState,
    labels: np.ndarray,
    candidates: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
) -> np.ndarray:
    """Network-loss increase of snapping each candidate cluster, one cluster at a time.

    ``L(W with the free weights of cluster j set to c_j u_i) - L(W)``, ``L`` the mean
    cross-entropy of ``model`` on ``(x, y)`` in eval mode; ``weight`` (a parameter of
    ``model``) is restored bit-exactly after each trial.
    """
    was_training = model.training
    model.eval()
    loss_fn = nn.CrossEntropyLoss()
    try:
        base = float(loss_fn(model(x), y))
        saved = weight.detach().clone()
        flat = weight.view(-1)
        free = torch.from_numpy(~state.mask)
        lab = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        unit = torch.from_numpy(state.unit)
        out = []
        for j in candidates:
            sel = free & (lab == j)
            flat[sel] = (float(state.centroids[j]) * unit[sel]).to(flat.dtype)
            out.append(float(loss_fn(model(x), y)) - base)
            weight.copy_(saved)
    finally:
        model.train(was_training)
    return np.array(out)


def rank_clusters(candidates: Sequence[int], losses: np.ndarray, order: str) -> list[int]:
    """Candidates sorted by loss, larger first for ``"descending"`` (ties: lower index first).

    >>> rank_clusters([1, 2, 3], np.array([0.1, 0.5, 0.1]), "descending")
    [2, 1, 3]
    >>> rank_clusters([1, 2, 3], np.array([0.1, 0.5, 0.1]), "ascending")
    [1, 3, 2]
    """
    if order not in ORDERS:
        raise ValueError(f"Cluster order must be one of {ORDERS}, not {order!r}")
    key = -np.asarray(losses, dtype=np.float64) if order == "descending" else np.asarray(losses)
    return [int(candidates[i]) for i in np.argsort(key, kind="stable")]


# --- integer codebook -----------------------------------------------------------------------


def codebook_weight(
    centroids: np.ndarray, labels: np.ndarray, shape: tuple[int, ...],
    *, table_bits: int = TABLE_BITS,
) -> QuantizedWeight:
    """The integer ``CODEBOOK`` weight of a fully clustered layer.

    ``scale = max|c_j| / (2**(t-1) - 1)`` over the clusters in use (``t = table_bits``; 1.0
    if all are zero), ``entry_j = round(c_j / scale)`` (half to even), ``values = entry[label]``.
    The table holds the distinct entries in use, 0 first, then by decreasing use (ties by
    value); indices are ``ceil(log2(len(table)))`` bits (at least 1).

    Parameters
    ----------
    centroids : np.ndarray
        float64 ``(k,)``, ``centroids[0] == 0``.
    labels : np.ndarray
        cluster of each weight (all >= 0), flattened.
    shape : tuple of int
        the weight shape; ``shape[0]`` output channels.
    table_bits : int, default 8

    Returns
    -------
    QuantizedWeight
        ``float weight = values * scale[c]`` with one scale repeated per channel.

    Examples
    --------
    >>> q = codebook_weight(np.array([0.0, 0.5, -0.25]), np.array([1, 0, 2, 1]), (2, 2))
    >>> q.values.tolist(), q.spec.table.tolist(), int(q.spec.bits), float(q.scale[0]) * 127
    ([[127, 0], [-64, 127]], [0, 127, -64], 2, 0.5)
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if (labels < 0).any():
        raise ValueError("Every weight must belong to a cluster before building the codebook")
    c = np.asarray(centroids, dtype=np.float64)
    if c.ndim != 1 or c.size == 0 or c[0] != 0:
        raise ValueError(f"Centroid 0 must be exactly 0 (the zero cluster), not {c[:1].tolist()}")
    used = np.unique(labels)
    top = float(np.max(np.abs(c[used])))
    scale = top / ((1 << (table_bits - 1)) - 1) if top > 0 else 1.0
    entries = np.round(c / scale).astype(np.int64)
    entries[0] = 0
    values = entries[labels]
    nonzero, counts = np.unique(values[values != 0], return_counts=True)
    table = np.concatenate([[0], nonzero[np.lexsort((nonzero, -counts))]]).astype(np.int64)
    index_bits = max(1, math.ceil(math.log2(table.size)))
    spec = WeightSpec("codebook", bits=np.array(index_bits), table=table, table_bits=table_bits)
    values = values.reshape(shape)
    spec.validate(values, "codebook")
    return QuantizedWeight(values=values, scale=np.full(shape[0], scale), spec=spec)


def _finish(model: nn.Module, layers: list[tuple[str, nn.Module]],
            states: dict[str, ClusterState]) -> dict[str, QuantizedWeight]:
    out: dict[str, QuantizedWeight] = {}
    for name, module in layers:
        st = states[name]
        q = codebook_weight(st.centroids, st.labels, tuple(module.weight.shape))
        if st.channel_scale is not None:
            q = QuantizedWeight(q.values, q.scale * st.channel_scale, q.spec)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(q.dequantize()))
        out[name] = q
    return out


def _snap(weight: torch.Tensor, state: ClusterState, labels: np.ndarray,
          which: np.ndarray) -> None:
    """Quantize the weights ``which`` (flattened bool) into their clusters ``labels``."""
    state.labels[which] = labels[which]
    idx = torch.from_numpy(np.flatnonzero(which))
    vals = state.centroids[labels[which]]
    if state.channel_scale is not None:
        vals = vals * state.unit[which]
    vals = torch.from_numpy(vals).to(weight.dtype)
    with torch.no_grad():
        weight.view(-1)[idx] = vals


def _flat(weight: torch.Tensor) -> np.ndarray:
    return weight.detach().reshape(-1).double().numpy()


def _units(weight: torch.Tensor, state: ClusterState) -> np.ndarray:
    """The weights in units of their channel's scale (flattened), what k-means clusters."""
    w = _flat(weight)
    return w if state.channel_scale is None else w / state.unit


def _masks(layers: list[tuple[str, nn.Module]],
           states: dict[str, ClusterState]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(states[name].mask.reshape(module.weight.shape).copy())
            for name, module in layers}


# --- SLQ ------------------------------------------------------------------------------------


def quantize_slq(
    model: nn.Module,
    data: Any,
    *,
    bits: int,
    seed: int = 0,
    progress: bool = True,
    schedule: Sequence[float] = DEFAULT_SCHEDULE,
    loss: str = "network",
    order: str = "descending",
    scale: str = "layer",
    loss_samples: int = 512,
    iterations: int = 10,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    lr_schedule: str = "cosine",
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    num_threads: int | None = 1,
    on_step: StageCallback | None = None,
) -> dict[str, QuantizedWeight]:
    """Quantize every conv/linear weight of ``model`` to a ``b``-bit ``CODEBOOK`` by SLQ.

    Per layer, ``k = 2**(b-1) + 1`` clusters start on the power-of-two ladder
    (:func:`hwq.quant.kmeans.pot_ladder`). Stage ``s`` of the schedule, for every layer:

    1. runs ``iterations`` Lloyd iterations (:func:`hwq.quant.kmeans.kmeans_1d`) on the
       current weights, warm-started from the previous centroids; quantized weights keep
       their clusters and frozen centroids do not move;
    2. ranks the clusters not yet quantized by their quantization loss (``loss``; all layers
       ranked on the same model state before any is snapped) and adds the first ones in
       ``order`` until ``ceil(sigma_s * (k - 1))`` nonzero clusters are quantized; the zero
       cluster is quantized in the first stage (as in the official code);
    3. snaps every free weight labelled with a quantized cluster (the new ones, and free
       weights that drifted into an older quantized cluster) to its centroid and freezes it;
    4. unless it is the last stage, retrains the free weights and the biases with masked SGD.

    The last stage quantizes all clusters and does not retrain.

    On digits (integer pipeline, 3 seeds, fp32 99.3 %): 3 bits 98.7 % with these defaults,
    98.2 % with ``loss="weight"``, 96.2 % with ``order="ascending"``; without retraining
    95.7 %.

    Parameters
    ----------
    model : nn.Module
        BatchNorm-folded float model; modified in place and left holding the dequantized
        weights ``values * scale`` (its train/eval mode is restored).
    data : object with ``x_train``, ``y_train``, or a pair ``(x, y)``
        Retraining data; also the network-loss batch.
    bits : int
        ``b`` in 2..8: ``2**(b-1) + 1`` clusters, ``b``-bit indices.
    seed : int, default 0
        Seeds the loss batch and the shuffling of every retraining stage.
    progress : bool, default True
        Show a progress bar per retraining stage.
    schedule : sequence of float, default (0.25, 0.5, 0.75, 0.875, 1)
        Accumulated portions of the nonzero clusters (:func:`group_counts`): increasing, in
        (0, 1], ending in 1. At 5 bits the default is zero + 4 clusters, then 4, 4, 2, 2.
    loss : {"network", "weight"}, default "network"
        ``"network"``: increase of the cross-entropy on a batch of ``loss_samples`` training
        images when the cluster's free weights are snapped to its centroid
        (:func:`network_cluster_losses`); ``"weight"``: ``sum (w - c)**2`` over them.
    order : {"descending", "ascending"}, default "descending"
        Larger-loss clusters first (the paper), or smaller first.
    scale : {"layer", "channel"}, default "layer"
        Shared values per layer (the paper), or per layer in units of each output channel's
        largest initial ``|w|`` (:func:`channel_scale`; one table, per-channel scales).
    loss_samples : int, default 512
        Training images (a seeded random subset) in the network-loss batch.
    iterations : int, default 10
        Lloyd iterations per k-means run.
    epochs : int, default 8
        Retraining epochs per stage (0: none); as INQ's, so that equal schedules get equal
        retraining budgets (the digits model trains in 30 epochs).
    lr : float, default 0.05
        Learning rate at the start of each stage (reset each stage): the digits training's
        peak rate, annealed by ``lr_schedule`` within the stage.
    lr_schedule, batch_size, momentum, weight_decay
        Passed to :func:`hwq.workloads.train.fit` (``lr_schedule`` as ``schedule``).
    num_threads : int or None, default 1
        Intra-op threads while retraining and measuring losses (as :func:`quantize_inq`).
    on_step : callable, optional
        ``on_step(stage, model, states)`` after each stage's quantization, before its
        retraining; ``states`` maps each layer to a copy of its :class:`ClusterState`.

    Returns
    -------
    dict of str to QuantizedWeight
        Per layer (:func:`codebook_weight`).

    Raises
    ------
    ValueError
        For a bit width outside 2..8, a bad schedule, an unknown loss, order or scale, or
        bad retraining arguments.
    """
    k = cluster_count(bits)
    sigmas = check_schedule(schedule, "SLQ")
    if loss not in LOSSES:
        raise ValueError(f"SLQ loss must be one of {LOSSES}, not {loss!r}")
    if order not in ORDERS:
        raise ValueError(f"SLQ cluster order must be one of {ORDERS}, not {order!r}")
    if isinstance(loss_samples, bool) or not isinstance(loss_samples, int) or loss_samples < 1:
        raise ValueError(f"SLQ loss samples must be an integer >= 1, not {loss_samples!r}")
    if scale not in SCALES:
        raise ValueError(f"SLQ codebook scale must be one of {SCALES}, not {scale!r}")
    check_training("SLQ", epochs=epochs, lr=lr, seed=seed)
    layers = weight_layers(model)
    if not layers:
        raise ValueError("SLQ found no Conv2d or Linear layer to quantize in the model")
    counts = group_counts(k, sigmas)
    needs_data = loss == "network" or (epochs > 0 and len(counts) > 1)
    x, y = training_tensors(data, "SLQ") if needs_data else (None, None)
    if loss == "network":
        pick = torch.from_numpy(np.random.default_rng(seed).permutation(x.shape[0])[:loss_samples])
        xl, yl = x[pick], y[pick]
    was_training = model.training

    states: dict[str, ClusterState] = {}
    for name, module in layers:
        frozen = np.zeros(k, bool)
        frozen[0] = True  # the zero cluster: fixed at 0, quantized in the first stage
        st = ClusterState(np.zeros(k), frozen, np.full(module.weight.numel(), -1, np.int64),
                          channel_scale(module.weight, scale))
        st.centroids = pot_ladder(float(np.abs(_units(module.weight, st)).max()), k)
        states[name] = st

    for stage, target in enumerate(counts):
        labels: dict[str, np.ndarray] = {}
        chosen: dict[str, list[int]] = {}
        for name, module in layers:
            st = states[name]
            st.centroids, labels[name] = kmeans_1d(_units(module.weight, st), st.centroids,
                                                   frozen=st.frozen, fixed=st.labels,
                                                   iterations=iterations)
            cand = [j for j in range(1, k) if not st.frozen[j]]
            need = target - int(st.frozen[1:].sum())
            if need >= len(cand):
                chosen[name] = cand
                continue
            if loss == "network":
                with torch_threads(num_threads):
                    losses = network_cluster_losses(model, module.weight, st, labels[name],
                                                    cand, xl, yl)
            else:
                losses = weight_cluster_losses(_flat(module.weight), st, labels[name], cand)
            chosen[name] = rank_clusters(cand, losses, order)[:need]
        for name, module in layers:
            st = states[name]
            st.frozen[chosen[name]] = True
            _snap(module.weight, st, labels[name], ~st.mask & st.frozen[labels[name]])
        if on_step is not None:
            on_step(stage, model, {n: s.copy() for n, s in states.items()})
        if stage < len(counts) - 1 and epochs > 0:
            masked_fit(model, x, y, _masks(layers, states), epochs=epochs, lr=lr,
                       seed=step_seed(seed, stage), progress=progress,
                       desc=f"SLQ {bits}b stage {stage + 1}/{len(counts)}",
                       schedule=lr_schedule, batch_size=batch_size, momentum=momentum,
                       weight_decay=weight_decay, num_threads=num_threads)
    model.train(was_training)
    return _finish(model, layers, states)


# --- MLQ ------------------------------------------------------------------------------------


def quantize_mlq(
    model: nn.Module,
    data: Any,
    *,
    bits: int = 2,
    seed: int = 0,
    progress: bool = True,
    recluster: str = "refit",
    scale: str = "layer",
    iterations: int = 10,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    lr_schedule: str = "cosine",
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    num_threads: int | None = 1,
    on_step: StageCallback | None = None,
) -> dict[str, QuantizedWeight]:
    """Quantize every conv/linear weight of ``model`` to ternary ``{0, +c, -c}`` by MLQ.

    Layers are taken in order (depth partition). For layer ``l``:

    1. k-means with ``k = 3`` (zero fixed, ``+/-2**floor(log2 max|w|)`` initial centroids,
       ``iterations`` Lloyd iterations);
    2. the +/- clusters (the larger-loss part of a ternary layer) are snapped to their
       centroids and frozen; the zero-cluster weights stay free;
    3. masked SGD retrains the free weights: layer ``l``'s zero cluster and every later
       layer (earlier layers are fully quantized and frozen), plus all biases;
    4. the layer is re-clustered fully and every weight snapped: ``recluster="refit"``
       reruns k-means over all of the layer's weights with the +/- centroids free (the shared
       values move to the new means); ``"assign"`` keeps the centroids of step 2 frozen and
       assigns each retrained weight to the nearest of ``{0, +c, -c}``. On digits the two
       are within noise (98.4 % and 98.6 %, 3 seeds); ``"refit"`` is the literal reading.

    Parameters
    ----------
    model : nn.Module
        BatchNorm-folded float model; modified in place, left holding the dequantized weights.
    data : object with ``x_train``, ``y_train``, or a pair ``(x, y)``
        Retraining data.
    bits : int, default 2
        Must be 2 (ternary: 3 entries, 2-bit indices).
    seed : int, default 0
        Seeds the shuffling of every retraining step.
    progress : bool, default True
    recluster : {"refit", "assign"}, default "refit"
    scale : {"layer", "channel"}, default "layer"
        As :func:`quantize_slq`.
    iterations : int, default 10
    epochs : int, default 8
        Retraining epochs per layer (0: none).
    lr : float, default 0.05
        Learning rate at the start of each layer's retraining.
    lr_schedule, batch_size, momentum, weight_decay, num_threads
        As :func:`quantize_slq`.
    on_step : callable, optional
        ``on_step(step, model, states)`` after step 2 (``step = 2 l``) and step 4
        (``step = 2 l + 1``) of each layer ``l``.

    Returns
    -------
    dict of str to QuantizedWeight
        Per layer (:func:`codebook_weight`): at most 3 table entries, 2-bit indices.

    Raises
    ------
    ValueError
        For a bit width other than 2, an unknown ``recluster`` or ``scale``, or bad retraining
        arguments.
    """
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or bits != 2:
        raise ValueError(f"MLQ is ternary: its bit width must be 2, not {bits!r}")
    if recluster not in RECLUSTER:
        raise ValueError(f"MLQ recluster must be one of {RECLUSTER}, not {recluster!r}")
    if scale not in SCALES:
        raise ValueError(f"MLQ codebook scale must be one of {SCALES}, not {scale!r}")
    check_training("MLQ", epochs=epochs, lr=lr, seed=seed)
    layers = weight_layers(model)
    if not layers:
        raise ValueError("MLQ found no Conv2d or Linear layer to quantize in the model")
    x, y = training_tensors(data, "MLQ") if epochs > 0 else (None, None)
    was_training = model.training

    states = {name: ClusterState(np.zeros(3), np.array([True, False, False]),
                                 np.full(module.weight.numel(), -1, np.int64),
                                 channel_scale(module.weight, scale))
              for name, module in layers}
    for index, (name, module) in enumerate(layers):
        st = states[name]
        w = _units(module.weight, st)
        st.centroids, labels = kmeans_1d(w, pot_ladder(float(np.abs(w).max()), 3),
                                         iterations=iterations)
        st.frozen[:] = True
        _snap(module.weight, st, labels, labels != 0)
        if on_step is not None:
            on_step(2 * index, model, {n: s.copy() for n, s in states.items()})
        if epochs > 0:
            masked_fit(model, x, y, _masks(layers, states), epochs=epochs, lr=lr,
                       seed=step_seed(seed, index), progress=progress,
                       desc=f"MLQ layer {index + 1}/{len(layers)}", schedule=lr_schedule,
                       batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                       num_threads=num_threads)
        w = _units(module.weight, st)
        if recluster == "refit":
            st.centroids, labels = kmeans_1d(w, st.centroids, iterations=iterations)
            st.labels[:] = -1
        else:
            st.centroids, labels = kmeans_1d(w, st.centroids, frozen=st.frozen,
                                             fixed=st.labels, iterations=0)
        _snap(module.weight, st, labels, np.ones(w.size, bool))
        if on_step is not None:
            on_step(2 * index + 1, model, {n: s.copy() for n, s in states.items()})
    model.train(was_training)
    return _finish(model, layers, states)
