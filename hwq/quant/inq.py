"""INQ: Incremental Network Quantization (Zhou, Yao, Guo, Xu, Chen; ICLR 2017).

Every conv/linear weight of a layer ends up in the layer's (by default: its output
channel's) power-of-two set

    P_l = {+/-2**n1, ..., +/-2**n2, 0},   n1 = floor(log2(4 s / 3)),   s = max|W_l|,
    n2 = n1 + 1 - 2**(b-1) / 2,

``2**(b-2)`` magnitudes plus zero (``b = 2``: ternary ``{+/-2**n1, 0}``). Weights are moved
into the set a portion at a time (an accumulated schedule ``sigma_1 < ... < sigma_N = 1``):
at each step the largest-magnitude ``sigma_n`` of each layer's weights are quantized and
frozen, and the rest are retrained with masked SGD; the last step quantizes all and does not
retrain. The quantized set only grows. The result is the hardware's ``POT(b)`` format: the
integer value of a weight ``+/-2**n`` is ``+/-2**(n - n2)`` and the scale is ``2**n2``.

Choices this implementation makes where the paper is silent are documented on
:func:`quantize_inq` and available as options.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from hwq.golden.formats import PotFormat
from hwq.ir import WeightSpec
from hwq.quant.base import QuantizedWeight, weight_layers
from hwq.workloads.train import fit

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "DEFAULT_SCHEDULE",
    "GRANULARITIES",
    "PARTITIONS",
    "TERNARY_SCHEDULE",
    "inq_exponents",
    "inq_pot_values",
    "inq_round",
    "inq_set",
    "masked_fit",
    "quantize_inq",
    "training_tensors",
]

#: Accumulated portions of quantized weights per step (the paper's ResNet/VGG schedule),
#: the default for 3..7 bits.
DEFAULT_SCHEDULE: tuple[float, ...] = (0.5, 0.75, 0.875, 1.0)
#: The default at 2 bits (ternary): the paper's ResNet-18 2-bit schedule. Ternary sets leave
#: the last weights (quantized without retraining) little to round to: on digits the 4-step
#: schedule ends at 95.9 %, these ten steps at 97.2 % (means of 3 seeds; fp32 99.3 %).
TERNARY_SCHEDULE: tuple[float, ...] = (0.2, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 1.0)
#: Retraining epochs after each step but the last (the digits model trains in 30).
DEFAULT_EPOCHS = 8
#: Learning rate at the start of each retraining step: the digits training's peak rate.
DEFAULT_LR = 0.05
#: How each step chooses the weights it quantizes.
PARTITIONS: tuple[str, ...] = ("magnitude", "random")
#: One set per layer (the paper) or per output channel.
GRANULARITIES: tuple[str, ...] = ("layer", "channel")
#: Weight bit widths (``POT(b)`` holds INQ's ``2**(b-2)`` magnitudes for ``b`` in 2..7).
BITS = (2, 7)

StepCallback = Callable[[int, nn.Module, dict[str, torch.Tensor]], None]


# --- the power-of-two set and its rounding --------------------------------------------------


def check_bits(bits: object, method: str, lo: int, hi: int) -> int:
    """``bits`` as an int if it is an integer in ``lo..hi``, else ``ValueError``."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not lo <= bits <= hi:
        raise ValueError(f"{method} bit width must be an integer in {lo}..{hi}, not {bits!r}")
    return int(bits)


def inq_exponents(max_abs: float, bits: int) -> tuple[int, int]:
    """Largest and smallest exponent of a layer's INQ set.

    ``n1 = floor(log2(4 s / 3))`` (computed exactly: the largest ``n`` with
    ``3 * 2**(n-2) <= s``) and ``n2 = n1 + 1 - 2**(b-1) / 2``.

    Parameters
    ----------
    max_abs : float
        ``s = max|W_l|``, positive and finite.
    bits : int
        ``b`` in 2..7; one bit of ``b`` is the sign, one code is zero.

    Returns
    -------
    (n1, n2) : tuple of int

    Examples
    --------
    >>> inq_exponents(0.75, 5), inq_exponents(0.7499, 3), inq_exponents(1.0, 2)
    ((0, -7), (-1, -2), (0, 0))
    """
    bits = check_bits(bits, "INQ", *BITS)
    s = float(max_abs) if isinstance(max_abs, numbers.Real) else math.nan
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"Largest weight magnitude must be a positive finite number, "
                         f"not {max_abs!r}")
    n1 = math.floor(math.log2(4.0 * s / 3.0))
    while 3.0 * 2.0 ** (n1 - 2) > s:  # correct a log2 rounded up at a boundary
        n1 -= 1
    while 3.0 * 2.0 ** (n1 - 1) <= s:  # ... or rounded down
        n1 += 1
    return n1, n1 + 1 - (1 << (bits - 1)) // 2


def inq_set(max_abs: float, bits: int) -> np.ndarray:
    """The layer's INQ set ``P_l``, ascending: ``-2**n1 .. -2**n2, 0, 2**n2 .. 2**n1``.

    Examples
    --------
    >>> inq_set(1.0, 3).tolist()
    [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    n1, n2 = inq_exponents(max_abs, bits)
    mags = np.ldexp(1.0, np.arange(n2, n1 + 1))
    return np.concatenate([-mags[::-1], [0.0], mags])


def _level_index(w: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """0 for zero, ``i >= 1`` for magnitude ``2**(n2 + i - 1)``: exact comparisons."""
    if n2 > n1:
        raise ValueError(f"Smallest exponent n2 must be <= largest n1, not n2={n2} > n1={n1}")
    # |W| >= 2**(n2-1) -> 2**n2; |W| >= (2**(n-1) + 2**n)/2 = 3*2**(n-2) -> 2**n (n > n2)
    thresholds = np.concatenate([[math.ldexp(1.0, n2 - 1)],
                                 3.0 * np.ldexp(1.0, np.arange(n2 + 1, n1 + 1) - 2)])
    return np.searchsorted(thresholds, np.abs(np.asarray(w, dtype=np.float64)), side="right")


def inq_round(w: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """Round weights into ``{+/-2**n1, ..., +/-2**n2, 0}`` by INQ's midpoint rule.

    With adjacent magnitudes ``a < c`` of the set, ``W -> c * sgn(W)`` if
    ``(a + c) / 2 <= |W| < 3c / 2``; ``|W| < 2**(n2-1) -> 0``; ``|W| >= 3 * 2**(n1-1)`` (only
    after retraining grew a weight past the set) ``-> 2**n1 * sgn(W)``. Ties go to the larger
    magnitude. This is nearest-value rounding in the linear domain.

    Parameters
    ----------
    w : array of float
    n1, n2 : int
        exponents of :func:`inq_exponents`.

    Returns
    -------
    np.ndarray
        float64, the shape of ``w``.

    Examples
    --------
    >>> inq_round(np.array([0.24, 0.25, 0.74, 0.75, -1.49, 1.5, 9.0]), 0, -1).tolist()
    [0.0, 0.5, 0.5, 1.0, -1.0, 1.0, 1.0]
    """
    w = np.asarray(w, dtype=np.float64)
    idx = _level_index(w, n1, n2)
    mag = np.where(idx > 0, np.ldexp(1.0, n2 + np.maximum(idx, 1) - 1), 0.0)
    return np.where(w < 0, -mag, mag)


def inq_pot_values(w: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """Integer values of :func:`inq_round`'s result relative to ``2**n2``.

    ``+/-2**n -> +/-2**(n - n2)`` (so the float weight is ``value * 2**n2``), ``0 -> 0``;
    ``2**(n1 - n2) <= 2**(2**(b-2) - 1)`` fits ``POT(b)``.

    Examples
    --------
    >>> inq_pot_values(np.array([0.3, -0.6, 1.2, 0.1]), 0, -2).tolist()
    [1, -2, 4, 0]
    """
    w = np.asarray(w, dtype=np.float64)
    idx = _level_index(w, n1, n2)
    mag = np.where(idx > 0, np.left_shift(np.int64(1), np.maximum(idx, 1) - 1), 0)
    return np.where(w < 0, -mag, mag).astype(np.int64)


# --- shared by the retraining methods -------------------------------------------------------


def training_tensors(data: Any, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_train, y_train)`` of ``data``: an object with those attributes, or a pair."""
    if hasattr(data, "x_train") and hasattr(data, "y_train"):
        return data.x_train, data.y_train
    if isinstance(data, tuple | list) and len(data) == 2:
        return data[0], data[1]
    raise ValueError(f"{method} needs training data: an object with x_train and y_train "
                     f"(e.g. hwq.workloads.digits.load_data()) or a pair (x, y), "
                     f"not {type(data).__name__}")


def masked_fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    masks: Mapping[str, torch.Tensor],
    *,
    epochs: int,
    lr: float,
    seed: int,
    progress: bool,
    desc: str,
    **fit_options: Any,
) -> list[float]:
    """Retrain ``model`` with SGD while the weights under ``masks`` stay bit-exactly fixed.

    ``masks`` maps a module name to a bool tensor of its weight's shape (True = frozen).
    The frozen gradients are zeroed before each step (masked SGD), and because momentum and
    weight decay would still move them, the frozen values are written back after each step.
    Every other parameter (free weights, biases) trains. Arguments are
    :func:`hwq.workloads.train.fit`'s.

    Returns
    -------
    list of float
        Mean training loss per epoch.
    """
    modules = dict(model.named_modules())
    frozen = [(modules[name].weight, m, modules[name].weight.detach().clone())
              for name, m in masks.items()]

    def grad_hook(_: nn.Module) -> None:
        for p, m, _v in frozen:
            if p.grad is not None:
                p.grad.masked_fill_(m, 0.0)

    def after_step(_: nn.Module) -> None:
        with torch.no_grad():
            for p, m, v in frozen:
                p.copy_(torch.where(m, v, p))

    return fit(model, x, y, epochs=epochs, lr=lr, seed=seed, progress=progress, desc=desc,
               grad_hook=grad_hook, after_step=after_step, **fit_options)


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``num_threads`` intra-op threads (``None``: unchanged)."""
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def step_seed(seed: int, step: int) -> int:
    """A 32-bit seed for retraining step ``step`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def check_training(method: str, *, epochs: object, lr: object, seed: object) -> None:
    """Validate the retraining arguments every method shares."""
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
        raise ValueError(f"{method} epochs per step must be an integer >= 0, not {epochs!r}")
    if (isinstance(lr, bool) or not isinstance(lr, numbers.Real)
            or not (math.isfinite(lr) and lr > 0)):
        raise ValueError(f"{method} learning rate must be a positive finite number, not {lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{method} seed must be an integer >= 0, not {seed!r}")


def check_schedule(schedule: object, method: str) -> tuple[float, ...]:
    """``schedule`` as a tuple of floats if it is increasing, in (0, 1] and ends in 1."""
    try:
        values = tuple(schedule)  # type: ignore[arg-type]
    except TypeError:
        values = ()
    ok = (
        len(values) > 0
        and all(isinstance(s, numbers.Real) and not isinstance(s, bool) for s in values)
        and all(0 < s <= 1 for s in values)
        and all(a < b for a, b in zip(values, values[1:], strict=False))
        and values[-1] == 1
    )
    if not ok:
        raise ValueError(f"{method} schedule must be an increasing list of portions in (0, 1] "
                         f"ending in 1, not {schedule!r}")
    return tuple(float(s) for s in values)


# --- the method -----------------------------------------------------------------------------


def quantize_inq(
    model: nn.Module,
    data: Any,
    *,
    bits: int,
    seed: int = 0,
    progress: bool = True,
    schedule: Sequence[float] | None = None,
    partition: str = "magnitude",
    granularity: str = "channel",
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    lr_schedule: str = "cosine",
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    num_threads: int | None = 1,
    on_step: StepCallback | None = None,
) -> dict[str, QuantizedWeight]:
    """Quantize every conv/linear weight of ``model`` to ``POT(bits)`` by INQ.

    For each output channel (``granularity="channel"``, the default) or each layer (the
    paper) the set ``P = {+/-2**n1..+/-2**n2, 0}`` is fixed once from the incoming weights,
    ``n1 = floor(log2(4 max|W| / 3))`` (:func:`inq_exponents`). Step ``n`` of the accumulated
    ``schedule`` then

    1. resets the learning rate to ``lr``;
    2. adds to the quantized set the free weights of largest ``|W|`` (current values) until
       ``round(sigma_n * N_l)`` of the layer's ``N_l`` weights are quantized
       (``partition="random"``: a seeded random choice among the free weights), and rounds
       them into ``P_l`` (:func:`inq_round`);
    3. unless ``sigma_n = 1``, retrains the free weights and the biases for ``epochs`` epochs
       with masked SGD (momentum 0.9, weight decay 5e-4; quantized weights get gradient 0
       and are restored after every step, so they never move).

    A weight once quantized is never freed or re-rounded. Biases are left float (they are
    integerized later).

    Why per channel by default: the paper quantizes the weights of convolutions that a
    BatchNorm follows, so each channel keeps a float gain. Here the model arrives with
    BatchNorm folded in, which scales every channel's weights by ``gamma / sigma``; one set
    per layer then wastes levels on the small channels (digits, 3 bits: 95.1 % per layer
    vs 98.6 % per channel, fp32 99.3 %). A per-channel ``2**n2`` costs nothing in hardware: it
    is folded into the per-channel requantization like any weight scale (POT codes are
    relative to the layer's *or channel's* smallest exponent, :mod:`hwq.golden.formats`).

    Parameters
    ----------
    model : nn.Module
        BatchNorm-folded float model; modified in place and left holding the dequantized
        weights ``value * 2**n2`` (its train/eval mode is restored).
    data : object with ``x_train``, ``y_train``, or a pair ``(x, y)``
        Retraining data (unused when ``epochs == 0`` or the schedule is ``(1,)``).
    bits : int
        ``b`` in 2..7: ``2**(b-2)`` magnitudes plus zero (``b = 8`` would need integer
        values up to ``2**63``, beyond ``POT``'s 7 bits).
    seed : int, default 0
        Seeds the shuffling of every retraining step and the random partition.
    progress : bool, default True
        Show a progress bar per retraining step.
    schedule : sequence of float, optional
        Accumulated portions ``sigma_n``: increasing, in (0, 1], ending in 1. ``(1,)`` is
        plain power-of-two rounding without retraining. Default: :data:`DEFAULT_SCHEDULE`
        ``(0.5, 0.75, 0.875, 1)``, and at 2 bits the paper's ternary schedule
        :data:`TERNARY_SCHEDULE` (ten steps).
    partition : {"magnitude", "random"}, default "magnitude"
        Largest ``|W|`` first (the paper's pruning-inspired split) or random.
    granularity : {"channel", "layer"}, default "channel"
        One set (``n1``, ``n2``, scale ``2**n2``) per output channel, or per layer.
    epochs : int, default 8
        Retraining epochs per step (0: none). The digits model is trained in 30 epochs;
        8 per step recover each step's loss (training loss back near fp32's); more do not
        change the accuracy measurably.
    lr : float, default 0.05
        Learning rate at the start of each step (reset each step): the digits training's
        peak rate, annealed by ``lr_schedule`` within the step.
    lr_schedule : {"cosine", "constant", "warmup-cosine"}, default "cosine"
        Decay within a step (:func:`hwq.workloads.train.fit`'s ``schedule``).
    batch_size, momentum, weight_decay
        Passed to :func:`hwq.workloads.train.fit`.
    num_threads : int or None, default 1
        Intra-op threads while retraining. One thread: the digits model is too small to gain
        from more (two threads on a busy machine run several times slower), and results are
        reproducible on any machine.
    on_step : callable, optional
        ``on_step(step, model, masks)`` after each step's quantization, before its
        retraining; ``masks`` maps each layer name to a copy of its bool mask (True =
        quantized).

    Returns
    -------
    dict of str to QuantizedWeight
        Per layer: ``values`` int64 ``+/-2**(n - n2)`` or 0 (``n2`` of the weight's channel
        or layer), ``scale[c] = 2**n2``, ``spec = WeightSpec("pot", bits=b)``.

    Raises
    ------
    ValueError
        For a bit width outside 2..7, a schedule that is not increasing or does not end
        in 1, an unknown partition or granularity, or bad retraining arguments.
    """
    bits = check_bits(bits, "INQ", *BITS)
    if schedule is None:
        schedule = TERNARY_SCHEDULE if bits == 2 else DEFAULT_SCHEDULE
    sigmas = check_schedule(schedule, "INQ")
    if partition not in PARTITIONS:
        raise ValueError(f"INQ partition must be one of {PARTITIONS}, not {partition!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"INQ granularity must be one of {GRANULARITIES}, not {granularity!r}")
    check_training("INQ", epochs=epochs, lr=lr, seed=seed)
    layers = weight_layers(model)
    if not layers:
        raise ValueError("INQ found no Conv2d or Linear layer to quantize in the model")
    retrains = epochs > 0 and len(sigmas) > 1
    x, y = training_tensors(data, "INQ") if retrains else (None, None)
    was_training = model.training
    rng = np.random.default_rng(seed)

    exps: dict[str, np.ndarray] = {}
    masks: dict[str, torch.Tensor] = {}
    for name, module in layers:
        w = module.weight.detach()
        rows = w.reshape(w.shape[0], -1).abs().amax(dim=1).double().numpy()
        if granularity == "layer":
            rows = np.full_like(rows, rows.max())
        # an all-zero layer (channel) rounds to zero with any exponents
        exps[name] = np.array([inq_exponents(s, bits) if s > 0 else
                               (0, 1 - (1 << (bits - 1)) // 2) for s in rows.tolist()])
        masks[name] = torch.zeros_like(w, dtype=torch.bool)

    for step, sigma in enumerate(sigmas):
        for name, module in layers:
            _quantize_portion(module.weight, masks[name], sigma, exps[name], partition, rng)
        if on_step is not None:
            on_step(step, model, {k: m.clone() for k, m in masks.items()})
        if sigma < 1 and epochs > 0:
            masked_fit(model, x, y, masks, epochs=epochs, lr=lr, seed=step_seed(seed, step),
                       progress=progress, desc=f"INQ {bits}b step {step + 1}/{len(sigmas)}",
                       schedule=lr_schedule, batch_size=batch_size, momentum=momentum,
                       weight_decay=weight_decay, num_threads=num_threads)
    model.train(was_training)

    out: dict[str, QuantizedWeight] = {}
    fmt = PotFormat(bits)
    for name, module in layers:
        w = module.weight.detach().double().numpy()
        values = np.stack([inq_pot_values(w[c], n1, n2)
                           for c, (n1, n2) in enumerate(exps[name].tolist())])
        values = fmt.validate(values)
        scale = np.ldexp(1.0, exps[name][:, 1])
        with torch.no_grad():  # already equal: every weight is in P_l; keep the exact product
            module.weight.copy_(torch.from_numpy(values * scale.reshape(-1, *[1] * (w.ndim - 1))))
        out[name] = QuantizedWeight(values=values, scale=scale,
                                    spec=WeightSpec("pot", bits=np.array(bits)))
    return out


def _quantize_portion(
    weight: torch.Tensor,
    mask: torch.Tensor,
    sigma: float,
    exps: np.ndarray,
    partition: str,
    rng: np.random.Generator,
) -> None:
    """Grow ``mask`` to ``round(sigma * N)`` weights and round the new ones into ``P_l``."""
    n = mask.numel()
    target = n if sigma >= 1 else min(n, math.floor(sigma * n + 0.5))
    flat_mask = mask.view(-1)
    need = target - int(flat_mask.sum())
    if need <= 0:
        return
    w = weight.detach().view(-1).double().numpy()
    free = np.flatnonzero(~flat_mask.numpy())
    if partition == "magnitude":
        chosen = free[np.argsort(-np.abs(w[free]), kind="stable")[:need]]
    else:
        chosen = rng.permutation(free)[:need]
    channel = chosen // (n // mask.shape[0])
    rounded = np.empty(chosen.size)
    for c in np.unique(channel).tolist():
        sel = channel == c
        rounded[sel] = inq_round(w[chosen[sel]], *exps[c].tolist())
    idx = torch.from_numpy(chosen)
    with torch.no_grad():
        weight.view(-1)[idx] = torch.from_numpy(rounded).to(weight.dtype)
    flat_mask[idx] = True
