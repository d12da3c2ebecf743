"""The ``joint`` method (:func:`quantize_joint`): ADMM under the size budget, then STE
fine-tuning through the k-means quantizer."""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from hwq.quant.base import apply_weights, weight_layers
from hwq.quant.joint.encoding import TABLE_BITS, budget_from, sparse_size
from hwq.quant.joint.kmeans import kmeans_zero
from hwq.quant.joint.knapsack import SALIENCIES, SOLVERS, layer_importance
from hwq.quant.joint.projection import _Plan, _Projector, minimum_budget
from hwq.quant.slq import codebook_weight
from hwq.workloads.train import fit

__all__ = ["BITS", "DEFAULT_DISTILL", "DEFAULT_EPOCHS", "DEFAULT_FINETUNE_EPOCHS", "DEFAULT_LR",
           "DEFAULT_RHO", "JointWeights", "constant_layers", "quantize_joint"]


#: Per-layer bit widths ``b`` (``2**b`` nonzero levels). 7 is the most: ``2**7`` levels and a
#: zero make a 129-entry table, which 8-bit CODEBOOK indices still address (8-bit tables
#: have at most 255 nonzero values).
BITS = (1, 7)
#: ADMM epochs (one projection and dual update per epoch).
DEFAULT_EPOCHS = 40
#: Fine-tuning epochs with fixed masks and bit widths.
DEFAULT_FINETUNE_EPOCHS = 30
#: Learning rate of the ADMM phase (constant) and peak of the fine-tuning (cosine).
DEFAULT_LR = 0.01
#: ADMM penalty ``rho`` at the first epoch.
DEFAULT_RHO = 1.0
#: Factor applied to ``rho`` after each epoch.
DEFAULT_RHO_GROWTH = 1.05
#: Weight of the distillation term in the training loss (0 is the paper's cross-entropy).
DEFAULT_DISTILL = 0.9



# --- fine-tuning through the k-means quantizer ---------------------------------------------


class _MaskedCodebookSTE(nn.Module):
    """Weight parametrization ``Q(W * mask)`` with a straight-through gradient."""

    def __init__(self, mask: torch.Tensor, centroids: np.ndarray, snap: bool):
        super().__init__()
        self.register_buffer("mask", mask)
        self.centroids = np.asarray(centroids, dtype=np.float64)
        self.snap = snap

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        c = torch.from_numpy(self.centroids if self.snap else self.centroids[1:]).to(w.dtype)
        order = torch.argsort(c)
        cs = c[order]
        mid = (cs[1:] + cs[:-1]) / 2
        return cs[torch.bucketize(w, mid, right=False)]

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        wm = w * self.mask
        return wm + (self.quantize(wm) * self.mask - wm).detach()


# --- knowledge distillation through hwq.workloads.train.fit --------------------------------


class _DistillGrad(torch.autograd.Function):
    """Zero in the forward; in the backward, turns the cross-entropy gradient into the
    distillation loss's.

    ``fit`` differentiates ``CE(s + 0, y)``, whose gradient at ``s`` is ``g = (softmax(s) -
    onehot(y)) / B``. This term's backward returns ``-alpha * g + alpha * T * (softmax(s / T)
    - softmax(t / T)) / B``, so the total is the gradient of ``(1 - alpha) * CE(s, y) +
    alpha * T**2 * KL(softmax(t / T) || softmax(s / T))`` (Hinton et al. 2015), exactly.
    """

    @staticmethod
    def forward(ctx: Any, s: torch.Tensor, t: torch.Tensor, alpha: float, temp: float
                ) -> torch.Tensor:
        ctx.save_for_backward(s, t)
        ctx.alpha, ctx.temp = alpha, temp
        return torch.zeros_like(s)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        s, t = ctx.saved_tensors
        a, temp = ctx.alpha, ctx.temp
        kd = temp * (torch.softmax(s / temp, dim=1) - torch.softmax(t / temp, dim=1)) \
            / s.shape[0]
        return -a * g + a * kd, None, None, None


class _Distilled(nn.Module):
    """``student(x)`` whose cross-entropy gradient becomes the distillation gradient."""

    def __init__(self, student: nn.Module, teacher: nn.Module, alpha: float, temp: float):
        super().__init__()
        self.student = student
        self._teacher = (teacher,)  # not a submodule: neither trained nor in parameters()
        self.alpha, self.temp = alpha, temp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.student(x)
        with torch.no_grad():
            t = self._teacher[0](x)
        return s + _DistillGrad.apply(s, t, self.alpha, self.temp)


# --- the method ----------------------------------------------------------------------------


class JointWeights(dict):
    """The method's ``dict[str, QuantizedWeight]`` with the run's facts in :attr:`info`."""

    info: dict[str, Any]


def constant_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Conv2d/Linear layers of ``model`` whose output is the same for every image of ``x``
    (a dead layer: no kept weight reads an input that varies)."""
    outs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: outs.__setitem__(n, o.detach()))
             for n, m in weight_layers(model)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return [n for n, o in outs.items() if o.shape[0] < 2 or bool((o == o[:1]).all())]


def chain_links(modules: Sequence[nn.Module]) -> list[tuple[int, np.ndarray | None]]:
    """Per weight layer ``(out_channels, the previous layer's channel each weight reads)``,
    the map None where the layer does not take the previous one's output channels (grouped
    convolutions, a first layer, widths that do not match): the projector's live path."""
    out: list[tuple[int, np.ndarray | None]] = []
    prev = None
    for m in modules:
        w = m.weight
        n, co = w.numel(), int(w.shape[0])
        link = None
        if prev is not None and isinstance(m, nn.Conv2d) and m.groups == 1 \
                and m.in_channels == prev:
            link = (np.arange(n) // (int(w.shape[2]) * int(w.shape[3]))) % m.in_channels
        elif prev is not None and isinstance(m, nn.Linear) and m.in_features % prev == 0:
            k = m.in_features
            link = (np.arange(n) % k) // (k // prev)
        out.append((co, link))
        prev = co
    return out


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo \
            or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"Joint {name} must be an integer {rng}, not {value!r}")
    return int(value)


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not (math.isfinite(value) and value > 0):
        raise ValueError(f"Joint {name} must be a positive finite number, not {value!r}")
    return float(value)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    # as hwq.workloads.train.fit: a final batch of one sample is skipped
    return sum(1 for s in range(0, n, batch_size) if min(batch_size, n - s) > 1)


def quantize_joint(
    model: nn.Module,
    data: Any,
    *,
    bits: int | None = None,
    compression: float | None = None,
    budget_bits: int | None = None,
    b_min: int = 1,
    init_bits: int = 3,
    rho: float = DEFAULT_RHO,
    rho_growth: float = DEFAULT_RHO_GROWTH,
    epochs: int = DEFAULT_EPOCHS,
    finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS,
    lr: float = DEFAULT_LR,
    finetune_lr: float | None = None,
    anneal_epochs: int = 0,
    anneal_from: float = 10.0,
    solver: str = "exact",
    proj_rounds: int = 3,
    snap_to_zero: bool = False,
    saliency: str = "magnitude",
    distill: float = DEFAULT_DISTILL,
    distill_temperature: float = 4.0,
    kmeans_iterations: int = 100,
    prune_dead_inputs: bool = True,
    table_bits: int = TABLE_BITS,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    num_threads: int | None = 1,
    seed: int = 0,
    progress: bool = True,
) -> JointWeights:
    """Joint sparsity-quantization by ADMM under a total size budget (Yang et al. 2020).

    The algorithm, the sparse encoding and what its size counts are in the module docstring.
    Defaults are scaled to the digits workload (20 optimizer steps per epoch, ~0.2 s per
    epoch on one idle core): ``epochs = 40`` ADMM epochs at a constant ``lr = 0.01`` with one
    projection and dual update per epoch, ``rho = 1`` growing by ``rho_growth = 1.05`` per
    epoch (``eta * rho`` pulls ``W`` about 20 % of the way to ``V - Y`` per epoch at first,
    60 % at the end; the paper's LeNet-5 ``rho = 0.05`` is for ~240 steps per epoch at
    ``lr = 0.1``), ``init_bits = 3`` (the official LeNet-5 ``--bit_budget``), then
    ``finetune_epochs = 30`` of STE fine-tuning with a cosine schedule from ``finetune_lr``
    (default ``lr``). 12-15 s on an idle machine without distillation (the default
    ``distill = 0.9`` adds a teacher forward per step), under a minute on 2 busy shared cores.

    Parameters
    ----------
    model : nn.Module
        The BatchNorm-folded float model; trained in place and left with the dequantized
        weights (biases trained, float).
    data : object
        ``x_train``, ``y_train`` (:class:`hwq.workloads.digits.DigitsData`).
    bits : int or None, default None
        The widest per-layer ``b`` (``2**b`` levels), ``b_min..7``; ``None`` is 7.
    compression : float, optional
        Target ratio ``C > 1``: budget ``floor(32 * N / C)`` bits for ``N`` weights.
    budget_bits : int, optional
        The budget in bits (exactly one of ``compression`` and ``budget_bits``).
    b_min : int, default 1
        The narrowest per-layer ``b``.
    init_bits : int, default 3
        Every layer's ``b`` before the first projection (``b_min..bits``).
    rho, rho_growth : float
        ADMM penalty at the first epoch, and its factor per epoch (>= 1).
    epochs, finetune_epochs : int
        ADMM epochs (>= 1), fine-tuning epochs (>= 0).
    lr, finetune_lr : float
        SGD learning rates (ADMM constant; fine-tuning cosine from ``finetune_lr``).
    anneal_epochs : int, default 0
        Gradual compression: the projections of the first ``anneal_epochs`` ADMM epochs
        (0..epochs) use the budget times ``anneal_from ** (1 - e / anneal_epochs)`` at epoch
        ``e`` (0 at the first projection), falling geometrically to the budget; later epochs,
        fine-tuning and the result use the budget itself. 0: the budget from the start.
    anneal_from : float, default 10
        The first projection's budget over the final one (> 1).
    solver : {"exact", "greedy"}
        Multiple-choice knapsack solver (:func:`choose_bits`); the paper's is greedy.
    proj_rounds : int, default 3
        Sparse/bit-width alternations per projection.
    snap_to_zero : bool, default False
        Let k-means send kept weights to the exact zero (the paper's quantizer) instead of
        keeping every kept weight on a nonzero level.
    saliency : {"magnitude", "layer", "fisher"}, default "magnitude"
        Value of a weight in the sparse projection (:func:`layer_importance`): the paper's
        ``w**2``; ``w**2`` over the layer's mean ``w**2``; or ``w**2`` times a diagonal
        Fisher estimate (mean squared minibatch gradient, over the training data before the
        first projection, then over each ADMM epoch). On digits at 50x (seed 0, without
        distillation) both alternatives were worse than ``w**2`` (96.5 % and 96.9 % against
        97.6 %): they move nonzeros into the large, small-weight conv layer at 1-2 bits, and
        the extra nonzeros cost more index bits than they are worth.
    distill : float, default 0.9
        Knowledge distillation from the float model as given (frozen copy), in the ADMM and
        fine-tuning phases: the loss is ``(1 - distill) * CE + distill * T**2 * KL(teacher_T
        || student_T)``, 0..1; ``0`` is the paper's plain cross-entropy. Measured on digits
        at 50x (seeds 0, 1, 2, integer network): 0 gives 97.65 +/- 0.11 %, 0.9 gives
        98.70 +/- 0.19 % (fp32 99.26 %); 0.5 (97.78 %) and 1.0 (98.15 %) on seed 0 were worse.
    distill_temperature : float, default 4
        ``T`` of the distillation softmaxes.
    kmeans_iterations : int, default 100
    prune_dead_inputs : bool, default True
        In a chain of layers (each Conv2d/Linear reads the previous one's channels; not
        grouped, widths matching), the sparse projection keeps no weight that reads a
        channel of the previous layer left without kept weights (that channel is the
        constant ``ReLU(bias)``; such a weight only adds a constant) and spends its bits
        elsewhere. Measured on LeNet-5 before this option: at 1000x 231 of fc2's 441
        nonzeros, at 2000x 307 of 365, read hidden units with an empty fc1 row.
    table_bits : int, default 8
        Codebook entry width (2..8).
    batch_size, momentum, weight_decay, num_threads, seed, progress
        Training settings of :func:`hwq.workloads.train.fit`.

    Returns
    -------
    JointWeights
        ``CODEBOOK`` weights per layer; ``.info`` holds the budget, the :func:`sparse_size`
        accounting (per layer: nnz, bit width, index bits...; totals and ratios), the chosen
        ``bits`` per layer, the ADMM history and timings.

    Raises
    ------
    ValueError
        A bad option (named), or a budget below the headers and smallest codebooks.
    """
    t_start = time.perf_counter()
    b_max = 7 if bits is None else _check_int("bits", bits, BITS[0], BITS[1])
    b_min = _check_int("b_min", b_min, BITS[0], b_max)
    init_bits = _check_int("initial bits", init_bits, b_min, b_max)
    _check_positive("rho", rho)
    if _check_positive("rho growth", rho_growth) < 1:
        raise ValueError(f"Joint rho growth must be >= 1, not {rho_growth!r}")
    epochs = _check_int("epochs", epochs, 1)
    anneal_epochs = _check_int("anneal epochs", anneal_epochs, 0)
    if anneal_epochs > epochs:
        raise ValueError(f"Joint anneal epochs must be at most the ADMM epochs ({epochs}), "
                         f"not {anneal_epochs!r}")
    if _check_positive("anneal start", anneal_from) <= 1:
        raise ValueError(f"Joint anneal start must be > 1 (times the budget), "
                         f"not {anneal_from!r}")
    finetune_epochs = _check_int("fine-tuning epochs", finetune_epochs, 0)
    lr = _check_positive("learning rate", lr)
    finetune_lr = lr if finetune_lr is None else _check_positive("fine-tuning learning rate",
                                                                 finetune_lr)
    if solver not in SOLVERS:
        raise ValueError(f"Joint solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    proj_rounds = _check_int("projection rounds", proj_rounds, 1)
    kmeans_iterations = _check_int("k-means iterations", kmeans_iterations, 1)
    table_bits = _check_int("table bits", table_bits, 2, 8)
    seed = _check_int("seed", seed, 0)
    if not (hasattr(data, "x_train") and hasattr(data, "y_train")):
        raise ValueError("Joint needs training data with x_train and y_train "
                         f"(e.g. hwq.workloads.digits.load_data()), not {type(data).__name__}")
    layers = weight_layers(model)
    if not layers:
        raise ValueError("Model has no Conv2d or Linear layer to compress")
    names = [n for n, _ in layers]
    params = [m.weight for _, m in layers]
    shapes = [tuple(p.shape) for p in params]
    count = sum(p.numel() for p in params)
    budget = budget_from(count, compression=compression, budget_bits=budget_bits)
    minimum = minimum_budget([p.numel() for p in params], b_min, table_bits)
    if budget < minimum:
        raise ValueError(f"Joint budget of {budget} bits ({32 * count / budget:.1f}x) cannot "
                         f"hold one nonzero weight per layer: the minimum is {minimum} bits "
                         f"({32 * count / minimum:.1f}x); allow more bits or less compression")
    project = _Projector(budget, b_min, b_max, table_bits=table_bits, solver=solver,
                         rounds=proj_rounds, kmeans_iterations=kmeans_iterations,
                         snap=snap_to_zero)
    project.links = chain_links([m for _, m in layers])
    project.prune_dead_inputs = prune_dead_inputs and all(
        link is not None for _, link in project.links[1:])
    x, y = data.x_train, data.y_train
    if saliency not in SALIENCIES:
        raise ValueError(f"Joint saliency must be one of {', '.join(SALIENCIES)}, "
                         f"not {saliency!r}")
    if isinstance(distill, bool) or not isinstance(distill, numbers.Real) \
            or not 0 <= distill <= 1:
        raise ValueError(f"Joint distill must be a number in 0..1, not {distill!r}")
    distill_temperature = _check_positive("distillation temperature", distill_temperature)
    trained: nn.Module = model
    if distill > 0:
        teacher = copy.deepcopy(model).eval()
        for p_ in teacher.parameters():
            p_.requires_grad_(False)
        trained = _Distilled(model, teacher, float(distill), distill_temperature)

    def flat(ts: Sequence[torch.Tensor]) -> list[np.ndarray]:
        return [t.detach().reshape(-1).double().numpy().copy() for t in ts]

    def tensors(arrs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        return [torch.from_numpy(a).reshape(s).to(p.dtype)
                for a, s, p in zip(arrs, shapes, params, strict=True)]

    # --- ADMM ---
    timings: dict[str, float] = {}
    t = time.perf_counter()
    fisher_sum = [torch.zeros_like(p) for p in params]
    fisher_n = [0]

    def grad_hook(_: nn.Module) -> None:
        with torch.no_grad():
            for f, p in zip(fisher_sum, params, strict=True):
                if p.grad is not None:
                    f.add_(p.grad.detach() ** 2)
        fisher_n[0] += 1

    def importance(xs: list[np.ndarray]) -> list[np.ndarray | float]:
        if saliency != "fisher":
            return layer_importance(xs, saliency)
        fs = [(f / max(1, fisher_n[0])).reshape(-1).double().numpy() for f in fisher_sum]
        for f in fisher_sum:
            f.zero_()
        fisher_n[0] = 0
        return layer_importance(xs, saliency, fs)

    if saliency == "fisher":  # the first estimate: one pass over the training data
        was_training = model.training
        model.train()
        loss_fn = nn.CrossEntropyLoss()
        for s0 in range(0, x.shape[0], batch_size):
            if min(batch_size, x.shape[0] - s0) < 2:
                continue
            model.zero_grad(set_to_none=True)
            loss_fn(model(x[s0:s0 + batch_size]), y[s0:s0 + batch_size]).backward()
            grad_hook(model)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    def annealed(epoch: int) -> int:
        if epoch >= anneal_epochs:
            return budget
        return int(budget * float(anneal_from) ** (1 - epoch / anneal_epochs))

    w0 = flat(params)
    project.budget = annealed(0)
    plan = project(w0, [init_bits] * len(params), None, importance(w0))
    vs = tensors(plan.v)
    ys = [torch.zeros_like(p) for p in params]
    state = {"step": 0, "rho": float(rho), "plan": plan}
    history: list[dict[str, Any]] = []
    per_epoch = _steps_per_epoch(x.shape[0], batch_size)

    def record(epoch: int, p: _Plan) -> None:
        w = flat(params)
        gap = math.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(w, p.v, strict=True)))
        norm = math.sqrt(sum(float(np.sum(a ** 2)) for a in w))
        history.append({"epoch": epoch, "rho": state["rho"], "budget": project.budget,
                        "bits": list(p.bits),
                        "nnz": [int(m.sum()) for m in p.masks],
                        "primal_residual": gap / norm if norm else 0.0})

    def after_step(_: nn.Module) -> None:
        a = lr * state["rho"]
        with torch.no_grad():
            for p, v, yy in zip(params, vs, ys, strict=True):
                p.add_(v - yy, alpha=a).div_(1 + a)
        state["step"] += 1
        if state["step"] % per_epoch:
            return
        w = flat(params)
        wy = [a_ + y_.reshape(-1).double().numpy() for a_, y_ in zip(w, ys, strict=True)]
        project.budget = annealed(state["step"] // per_epoch)
        p_new = project(wy, state["plan"].bits, [int(m.sum()) for m in state["plan"].masks],
                        importance(wy))
        state["plan"] = p_new
        new_v = tensors(p_new.v)
        with torch.no_grad():
            for p, v, yy, nv in zip(params, vs, ys, new_v, strict=True):
                v.copy_(nv)
                yy.add_(p - v)
        record(state["step"] // per_epoch, p_new)
        state["rho"] *= rho_growth

    fit(trained, x, y, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
        weight_decay=weight_decay, schedule="constant", seed=seed, num_threads=num_threads,
        after_step=after_step, grad_hook=grad_hook if saliency == "fisher" else None,
        progress=progress, desc="joint admm")
    timings["admm"] = time.perf_counter() - t

    # --- fine-tuning with fixed masks and bit widths ---
    t = time.perf_counter()
    plan = state["plan"]
    masks = [torch.from_numpy(m.reshape(s)) for m, s in zip(plan.masks, shapes, strict=True)]
    centroids = []
    with torch.no_grad():
        for p, m, b in zip(params, masks, plan.bits, strict=True):
            p.mul_(m)
            nz = p.detach()[m].double().numpy()
            centroids.append(kmeans_zero(nz, 1 << b, iterations=kmeans_iterations,
                                         snap=snap_to_zero).centroids
                             if nz.size else np.zeros((1 << b) + 1))
    quants = [_MaskedCodebookSTE(m, c, snap_to_zero)
              for m, c in zip(masks, centroids, strict=True)]
    modules = [m for _, m in layers]
    if finetune_epochs:
        for mod, q in zip(modules, quants, strict=True):
            parametrize.register_parametrization(mod, "weight", q)

        def refresh(_: nn.Module) -> None:
            with torch.no_grad():
                for mod, q in zip(modules, quants, strict=True):
                    raw = mod.parametrizations.weight.original
                    raw.mul_(q.mask)
                    nz = raw[q.mask].double().numpy()
                    if nz.size:
                        q.centroids = kmeans_zero(nz, q.centroids.size - 1,
                                                  init=q.centroids[1:], iterations=1,
                                                  snap=snap_to_zero).centroids

        try:
            fit(trained, x, y, epochs=finetune_epochs, lr=finetune_lr, batch_size=batch_size,
                momentum=momentum, weight_decay=weight_decay, schedule="cosine", seed=seed,
                num_threads=num_threads, after_step=refresh, progress=progress,
                desc="joint finetune")
        finally:
            for mod in modules:
                parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
    timings["finetune"] = time.perf_counter() - t

    # --- final codebooks ---
    model.eval()
    params = [m.weight for m in modules]  # the parametrization may have swapped the objects
    out = JointWeights()
    for name, p, m, q, b in zip(names, params, masks, quants, plan.bits, strict=True):
        w = p.detach().double().numpy().reshape(-1)
        mk = m.numpy().reshape(-1)
        labels = np.zeros(w.size, dtype=np.int64)
        cents = np.zeros((1 << b) + 1)
        if mk.any():
            km = kmeans_zero(w[mk], 1 << b, init=q.centroids[1:], iterations=kmeans_iterations,
                             snap=snap_to_zero)
            labels[mk] = km.labels
            cents = km.centroids
        out[name] = codebook_weight(cents, labels, tuple(p.shape), table_bits=table_bits)
    apply_weights(model, out)
    constant = constant_layers(model, x[:256])
    if constant:
        raise ValueError(f"Joint produced a network whose layer(s) {', '.join(constant)} "
                           f"give a constant output at a budget of {budget} bits; allow more "
                           "bits")
    biases = {n: (int(m.bias.numel()) if m.bias is not None else 0) for n, m in layers}
    size = sparse_size(out, biases=biases)
    if size["total_bits"] > budget:  # impossible by construction; a loud guard
        raise RuntimeError(f"Joint result of {size['total_bits']} bits exceeds the budget "
                           f"of {budget} bits")
    timings["total"] = time.perf_counter() - t_start
    for name, b in zip(names, plan.bits, strict=True):
        size["layers"][name]["bits"] = b
        size["layers"][name]["ir_index_bits"] = int(out[name].spec.max_bits())
    out.info = {
        "budget_bits": budget,
        "compression_target": None if compression is None else float(compression),
        "bits": dict(zip(names, plan.bits, strict=True)),
        **size,
        "options": {"b_min": b_min, "b_max": b_max, "init_bits": init_bits,
                    "snap_to_zero": snap_to_zero, "saliency": saliency, "distill": distill,
                    "distill_temperature": distill_temperature, "rho": rho,
                    "rho_growth": rho_growth,
                    "epochs": epochs, "finetune_epochs": finetune_epochs, "lr": lr,
                    "finetune_lr": finetune_lr, "anneal_epochs": anneal_epochs,
                    "anneal_from": anneal_from, "solver": solver, "proj_rounds": proj_rounds,
                    "kmeans_iterations": kmeans_iterations, "table_bits": table_bits,
                    "prune_dead_inputs": project.prune_dead_inputs,
                    "seed": seed},
        "history": history,
        "timings": timings,
    }
    return out
