"""The external peer of ``hwq bench quant``: Brevitas on the same folded network.

The folded model with ``brevitas.nn`` layers in place of its own (see
:mod:`hwq.bench.quant`'s docstring for the setup), calibrated, then trained with uniform
QAT's settings; accuracies are Brevitas's own float fake-quant accuracy. Needs the
``[peers]`` extra; :func:`peer_status` says whether it imports, and why not.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import time
import warnings
from typing import Any

import torch
from torch import nn

__all__ = ["brevitas_model", "brevitas_runs", "peer_status", "quiet"]


@contextlib.contextmanager
def quiet() -> Any:
    """Silence Brevitas's import-time and deprecation chatter."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def peer_status(peers: bool) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": "brevitas", "requested": bool(peers), "available": False,
        "evaluated_by": "Brevitas's own float fake-quant model in torch (not hwq's integer "
                        "pipeline)",
        "setup": "folded network with brevitas.nn layers in place: QuantIdentity(8 bits) "
                 "input, QuantConv2d/QuantLinear(weight_bit_width=b, Int8WeightPerChannelFloat: "
                 "per-channel float scales from max|w|, narrow range), QuantReLU/QuantHardTanh"
                 "(8 bits), float biases, logits, pools and residual adds; pretrained folded "
                 "weights; activation scales calibrated on the training set "
                 "(calibration_mode); QAT with hwq.workloads.train.fit using uniform-qat's "
                 "settings (SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 64, cosine, "
                 "1 thread) and the workload's overrides of them (each run's options)",
    }
    if not peers:
        status["reason"] = "not requested (--no-peers)"
        return status
    try:
        with quiet():
            import brevitas
            import brevitas.nn  # noqa: F401
    except Exception as exc:  # ImportError, or a torch it cannot work with
        status["reason"] = (f"brevitas unavailable ({type(exc).__name__}: {exc}); install "
                            f"the [peers] extra (pip install brevitas)")
        return status
    status.update(available=True, version=getattr(brevitas, "__version__", "unknown"))
    return status


def brevitas_layer(m: nn.Module, bits: int, act_bits: int) -> nn.Module | None:
    """The Brevitas layer that replaces ``m`` (weights copied), or None to keep ``m``."""
    with quiet():
        import brevitas.nn as qnn
        from brevitas.quant import Int8WeightPerChannelFloat

    if type(m) is nn.Conv2d:
        q: nn.Module = qnn.QuantConv2d(
            m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
            dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
            weight_quant=Int8WeightPerChannelFloat, weight_bit_width=bits)
    elif type(m) is nn.Linear:
        q = qnn.QuantLinear(m.in_features, m.out_features, bias=m.bias is not None,
                            weight_quant=Int8WeightPerChannelFloat, weight_bit_width=bits)
    elif type(m) is nn.ReLU:
        return qnn.QuantReLU(bit_width=act_bits)
    elif type(m) in (nn.ReLU6, nn.Hardtanh):
        return qnn.QuantHardTanh(min_val=m.min_val, max_val=m.max_val, bit_width=act_bits)
    elif isinstance(m, nn.MaxPool2d | nn.AvgPool2d | nn.AdaptiveAvgPool2d | nn.Flatten
                    | nn.Identity | nn.Dropout) or not any(True for _ in m.parameters(False)):
        return None  # pools, reshapes and containers stay as they are
    else:
        raise ValueError(f"Brevitas peer: unsupported layer {type(m).__name__}")
    with torch.no_grad():
        q.weight.copy_(m.weight)
        if m.bias is not None:
            q.bias.copy_(m.bias)
    return q


def brevitas_model(folded: nn.Module, bits: int, act_bits: int = 8) -> nn.Module:
    """``folded`` with Brevitas layers in place of its convs, linears and clamps, after an
    8-bit ``QuantIdentity`` input; residual adds and pools stay float (fake-quant)."""
    with quiet():
        import brevitas.nn as qnn

    net = copy.deepcopy(folded)
    for name, m in list(net.named_modules()):
        q = brevitas_layer(m, bits, act_bits) if name else None
        if q is not None:
            parent, _, leaf = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, leaf, q)
    return nn.Sequential(qnn.QuantIdentity(bit_width=act_bits), net)


def brevitas_runs(model: nn.Module, data: Any, bits: int, seed: int, epochs: int,
                  overrides: dict[str, Any], act_bits: int = 8) -> list[dict[str, Any]]:
    """Brevitas at ``bits``: calibrated (``brevitas-ptq``), then QAT (``brevitas-qat``) with
    uniform QAT's training settings and the workload's ``overrides`` of them."""
    from hwq.quant.base import fold_batchnorm
    from hwq.quant.uniform import quantize_uniform_qat
    from hwq.workloads.train import evaluate, fit

    with quiet():
        from brevitas.graph.calibrate import calibration_mode

    # uniform QAT's training settings (its signature's defaults), so the budgets match
    defaults = {k: p.default for k, p in inspect.signature(quantize_uniform_qat).parameters.items()
                if k in ("lr", "batch_size", "momentum", "weight_decay", "schedule",
                         "clip_norm", "num_threads")}
    defaults.update({k: v for k, v in overrides.items() if k in defaults})
    t0 = time.perf_counter()
    net = brevitas_model(fold_batchnorm(model), bits, act_bits)
    with quiet(), torch.no_grad(), calibration_mode(net):
        for start in range(0, len(data.x_train), 256):
            net(data.x_train[start:start + 256])
    net.eval()
    with quiet():
        ptq = evaluate(net, data.x_test, data.y_test)
    t_cal = time.perf_counter() - t0
    t1 = time.perf_counter()
    with quiet():
        fit(net, data.x_train, data.y_train, epochs=epochs, seed=seed, progress=False,
            desc=f"brevitas {bits}b", **defaults)
        net.eval()
        qat = evaluate(net, data.x_test, data.y_test)
    t_qat = time.perf_counter() - t1
    common = {"method": "brevitas", "bits": bits, "seed": seed,
              "evaluated_by": "Brevitas float fake-quant", "fake_quant_accuracy": None,
              "fake_quant_float_accuracy": None, "output_mismatches": None}
    return [
        {"row": "brevitas-ptq", **common, "options": {}, "retrain_steps": 0,
         "epochs_per_step": 0, "retrain_epochs": 0, "accuracy": ptq,
         "timings": {"method": t_cal}, "seconds": t_cal},
        {"row": "brevitas-qat", **common, "options": {"epochs": epochs, **defaults},
         "retrain_steps": 1, "epochs_per_step": epochs, "retrain_epochs": epochs,
         "accuracy": qat, "timings": {"method": t_qat}, "seconds": t_cal + t_qat},
    ]
