"""A small, deterministic training loop shared by the workloads and the quantization methods.

:func:`fit` trains any classifier with cross-entropy on in-memory tensors; :func:`evaluate`
measures its top-1 accuracy. Quantization methods that retrain (uniform QAT, INQ, SLQ/MLQ)
plug in through two hooks:

* ``grad_hook(model)`` runs between ``backward()`` and ``optimizer.step()``; masked SGD zeroes
  the gradients of frozen weights there;
* ``after_step(model)`` runs after every optimizer step; methods re-apply masks or write the
  frozen (quantized) values back there. Momentum and weight decay move a weight even when its
  gradient is zero, so a method that freezes weights must restore them in ``after_step``.

Determinism: given the same model state, data, arguments and thread count, two calls return
bit-identical weights. :func:`fit` seeds its own random streams (shuffling uses a private
``torch.Generator``; the global RNG, used by dropout-like layers, is seeded inside a
:func:`torch.random.fork_rng` block) and turns on ``torch.use_deterministic_algorithms``
(``warn_only=True``) for the duration of the call; the caller's global RNG state, the
deterministic-algorithms flag and the thread count are restored on return.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["OPTIMIZERS", "SCHEDULES", "evaluate", "fit"]

#: Optimizers accepted by :func:`fit`.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
#: Learning-rate schedules accepted by :func:`fit` (applied per optimizer step).
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "warmup-cosine")

Hook = Callable[[nn.Module], None]


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    optimizer: str = "sgd",
    schedule: str = "constant",
    clip_norm: float | None = None,
    seed: int = 0,
    num_threads: int | None = None,
    after_step: Hook | None = None,
    grad_hook: Hook | None = None,
    progress: bool = True,
    desc: str = "train",
) -> list[float]:
    """Train ``model`` in place with cross-entropy loss on ``(x, y)``.

    Each epoch visits every sample once in an order drawn from a generator seeded with
    ``seed``; a final batch of a single sample is skipped (BatchNorm cannot normalize it).

    Parameters
    ----------
    model : nn.Module
        Classifier mapping a batch of ``x`` to logits of shape ``(batch, classes)``. Trained in
        place; it is left in train mode.
    x : torch.Tensor
        Inputs, shape ``(N, ...)``, floating point.
    y : torch.Tensor
        Class indices, shape ``(N,)``, int64.
    epochs : int
        Passes over the data, >= 1.
    lr : float
        Peak learning rate, > 0.
    batch_size : int, default 64
        Samples per optimizer step, >= 1.
    momentum : float, default 0.9
        SGD momentum (ignored by Adam), in [0, 1).
    weight_decay : float, default 5e-4
        L2 penalty coefficient added to the gradient by the optimizer, >= 0.
    optimizer : {"sgd", "adam"}, default "sgd"
        SGD with (non-Nesterov) momentum, or Adam with default betas.
    schedule : {"constant", "cosine", "warmup-cosine"}, default "constant"
        ``"cosine"`` anneals the learning rate per step from ``lr`` to 0:
        ``lr_t = lr * (1 + cos(pi * t / T)) / 2`` for step ``t`` of ``T``.
        ``"warmup-cosine"`` first rises linearly over the first epoch's ``W`` steps
        (``lr_t = lr * (t + 1) / W``; at most half of ``T``), then anneals as ``"cosine"``
        over the remaining ``T - W``: a retraining step that starts far from a minimum (a
        network just snapped to its quantized weights) does not take full-size steps on its
        first, largest gradients.
    clip_norm : float or None, default None
        If given, the gradient of all parameters together is scaled down to this L2 norm
        whenever it is longer (``torch.nn.utils.clip_grad_norm_``, after ``grad_hook``): one
        outlier batch cannot throw a network without normalization layers (a BatchNorm-folded
        one) into a state where every ReLU is dead.
    seed : int, default 0
        Seed of the shuffling order and of the global RNG inside the call.
    num_threads : int or None, default None
        Intra-op CPU threads during training (restored afterwards); ``None`` keeps the current
        setting. Results are reproducible for a fixed thread count.
    after_step : callable or None
        ``after_step(model)`` is called after every optimizer step, e.g. to re-apply masks
        or frozen quantized weights.
    grad_hook : callable or None
        ``grad_hook(model)`` is called between ``backward()`` and the optimizer step, e.g. to
        zero the gradients of frozen weights (masked SGD).
    progress : bool, default True
        Show a tqdm progress bar (one tick per epoch) on stderr.
    desc : str, default "train"
        Label of the progress bar.

    Returns
    -------
    list of float
        Mean training loss of each epoch (nats per sample), ``epochs`` entries.

    Raises
    ------
    ValueError
        If an argument is out of range or ``x`` and ``y`` do not match.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> x = torch.linspace(-1, 1, 64).reshape(32, 2)
    >>> y = (x[:, 0] > 0).long()
    >>> model = nn.Linear(2, 2)
    >>> losses = fit(model, x, y, epochs=3, lr=0.1, batch_size=8, progress=False)
    >>> len(losses), losses[-1] < losses[0]
    (3, True)
    """
    _check_int("Epochs", epochs, minimum=1)
    _check_int("Batch size", batch_size, minimum=1)
    _check_int("Seed", seed, minimum=0)
    if num_threads is not None:
        _check_int("Number of threads", num_threads, minimum=1)
    if not (_is_real(lr) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"Learning rate must be a positive finite number, not {lr!r}")
    if not (_is_real(momentum) and 0 <= momentum < 1):
        raise ValueError(f"Momentum must be a number in [0, 1), not {momentum!r}")
    if not (_is_real(weight_decay) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"Weight decay must be a non-negative finite number, not {weight_decay!r}")
    if clip_norm is not None and not (_is_real(clip_norm) and math.isfinite(clip_norm)
                                      and clip_norm > 0):
        raise ValueError(f"Gradient clip norm must be a positive finite number or None, "
                         f"not {clip_norm!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Optimizer must be one of {OPTIMIZERS}, not {optimizer!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"Schedule must be one of {SCHEDULES}, not {schedule!r}")
    _check_data(x, y)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("Model has no trainable parameters (none with requires_grad=True)")

    n = x.shape[0]
    device = params[0].device
    starts = [s for s in range(0, n, batch_size) if min(batch_size, n - s) > 1]
    if not starts:
        raise ValueError(f"Need at least 2 samples to train, got {n}")
    total_steps = epochs * len(starts)

    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    elif schedule == "warmup-cosine":
        warm = max(1, min(len(starts), total_steps // 2))

        def factor(t: int) -> float:
            if t < warm:
                return (t + 1) / warm
            return (1 + math.cos(math.pi * (t - warm) / max(1, total_steps - warm))) / 2

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    loss_fn = nn.CrossEntropyLoss()
    shuffle = torch.Generator().manual_seed(seed)

    losses: list[float] = []
    with _deterministic(seed, num_threads):
        model.train()
        bar = tqdm(
            range(epochs),
            desc=desc,
            unit="epoch",
            file=sys.stderr,
            disable=not progress,
            leave=False,
        )
        for _ in bar:
            order = torch.randperm(n, generator=shuffle)
            total, seen = 0.0, 0
            for start in starts:
                idx = order[start : start + batch_size]
                xb, yb = x[idx].to(device), y[idx].to(device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                if grad_hook is not None:
                    grad_hook(model)
                if clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_norm)
                opt.step()
                if sched is not None:
                    sched.step()
                if after_step is not None:
                    after_step(model)
                total += loss.item() * len(idx)
                seen += len(idx)
            losses.append(total / seen)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        bar.close()
    return losses


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024
) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, in percent.

    The model runs in eval mode without gradients; its previous train/eval mode is restored.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits of shape ``(batch, classes)``.
    x : torch.Tensor
        Inputs, shape ``(N, ...)``.
    y : torch.Tensor
        Class indices, shape ``(N,)``, int64.
    batch_size : int, default 1024
        Samples per forward pass (memory only; the result does not depend on it).

    Returns
    -------
    float
        ``100 * correct / N``, in [0, 100].

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(2, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.eye(2))
    >>> evaluate(model, torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]]), torch.tensor([0, 1, 1]))
    66.66666666666667
    """
    _check_int("Batch size", batch_size, minimum=1)
    _check_data(x, y)
    was_training = model.training
    model.eval()
    try:
        device = next(iter(model.parameters()), torch.empty(0)).device
        correct = 0
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device)
            yb = y[start : start + batch_size].to(device)
            correct += int((model(xb).argmax(dim=1) == yb).sum())
    finally:
        model.train(was_training)
    return 100.0 * correct / x.shape[0]


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_data(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 1:
        raise ValueError(
            f"Inputs x must be a floating-point tensor of shape (N, ...), not {_describe(x)}"
        )
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        raise ValueError(f"Labels y must be an int64 tensor of shape (N,), not {_describe(y)}")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"Inputs and labels must hold the same, non-zero number of samples, "
            f"not {x.shape[0]} and {y.shape[0]}"
        )


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return repr(type(t).__name__)


@contextmanager
def _deterministic(seed: int, num_threads: int | None) -> Iterator[None]:
    """Seed the global RNG, force deterministic kernels and fix the thread count; undo on exit."""
    mode = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(mode, warn_only=warn_only)
            torch.set_num_threads(threads)
