"""The common entry point: :func:`quantize` a model with any registered method.

``quantize(model, method=..., bits=..., data=...)`` folds BatchNorm, runs the method
(:mod:`hwq.quant.methods`) on the folded model, integerizes the result
(:func:`~hwq.quant.integerize.integerize`) and measures it: fp32 accuracy, the accuracy of
the fake-quant torch model, and the accuracy of the integer network run by the golden model
(:func:`hwq.golden.run`), which is the number that counts.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from hwq.golden.network import quantize_input, run
from hwq.ir import QuantizedNetwork
from hwq.quant.base import QuantizedWeight, fold_batchnorm
from hwq.quant.fakequant import CALIBRATIONS, FakeQuantModel
from hwq.quant.integerize import fake_quant_model
from hwq.quant.methods import get_method
from hwq.workloads import WORKLOADS, get_workload
from hwq.workloads.train import evaluate

__all__ = ["WORKLOADS", "QuantizeResult", "load_workload", "quantize"]


#: Settings of :func:`quantize` also handed to a method that declares a parameter of that name.
_SHARED = ("act_bits", "calibration", "percentile")


@dataclass(frozen=True, eq=False)
class QuantizeResult:
    """What :func:`quantize` produced and measured.

    Accuracies are top-1 on ``data.x_test``/``data.y_test``, in percent; argmax ties go to
    the first index everywhere.

    Attributes
    ----------
    network : QuantizedNetwork
        the integer network (its ``meta`` holds the settings and accuracies).
    method, bits, act_bits, seed
        the settings.
    fp32_accuracy : float
        the float model as given.
    weight_only_accuracy : float
        the folded float model with the method's dequantized weights (float activations).
    fake_quant_accuracy : float
        the :class:`FakeQuantModel` in torch, exact integer path (must equal ``accuracy``).
    fake_quant_float_accuracy : float
        the :class:`FakeQuantModel` float fake-quant path (what QAT trains).
    accuracy : float
        the integer network on the golden model: the quantized accuracy.
    output_mismatches : int
        test images whose integer outputs differ between the torch model and the golden
        model (0 unless something is broken).
    weight_bits_total : int
        storage of every weight code plus codebook tables, in bits (joint: its sparse
        weight stream, positions included; see ``info``).
    weight_count : int
        number of Conv2d/Linear weights.
    compression_ratio : float
        ``32 * weight_count / weight_bits_total`` (vs fp32 weights; biases and requant
        parameters not counted on either side).
    timings : dict of str -> float
        seconds: ``load``, ``fold``, ``method``, ``integerize``, ``evaluate``, ``total``.
    options : dict
        the method options used.
    qweights : dict of str -> QuantizedWeight
    model : nn.Module
        the folded float model holding the dequantized weights.
    fake_quant_model : FakeQuantModel
    info : dict
        what the method reports about itself (tq: ``coding_gain_db``, ``average_bits``;
        joint: per-layer bits, nnz, index bits, ``total_bits``).
    """

    network: QuantizedNetwork
    method: str
    bits: int | float | None
    act_bits: int
    seed: int
    fp32_accuracy: float
    weight_only_accuracy: float
    fake_quant_accuracy: float
    fake_quant_float_accuracy: float
    accuracy: float
    output_mismatches: int
    weight_bits_total: int
    weight_count: int
    compression_ratio: float
    timings: dict[str, float]
    options: dict[str, Any]
    qweights: dict[str, QuantizedWeight] = field(repr=False)
    model: nn.Module = field(repr=False)
    fake_quant_model: FakeQuantModel = field(repr=False)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serializable summary (no tensors)."""
        return {
            "method": self.method,
            "bits": self.bits,
            "act_bits": self.act_bits,
            "seed": self.seed,
            "options": self.options,
            "fp32_accuracy": self.fp32_accuracy,
            "weight_only_accuracy": self.weight_only_accuracy,
            "fake_quant_accuracy": self.fake_quant_accuracy,
            "fake_quant_float_accuracy": self.fake_quant_float_accuracy,
            "accuracy": self.accuracy,
            "output_mismatches": self.output_mismatches,
            "weight_bits_total": self.weight_bits_total,
            "weight_count": self.weight_count,
            "compression_ratio": self.compression_ratio,
            "timings": self.timings,
            **({"info": self.info} if self.info else {}),
            **({"coding_gain_db": self.info["coding_gain_db"]}
               if "coding_gain_db" in self.info else {}),
        }


def load_workload(name: str, *, progress: bool = True) -> tuple[nn.Module, Any]:
    """The pretrained model and data of a named workload (:data:`hwq.workloads.WORKLOADS`)."""
    workload = get_workload(name)
    return workload.pretrained(progress=progress), workload.load_data()


def quantize(
    model: nn.Module | str,
    method: str = "uniform",
    *,
    bits: int | float | None,
    data: Any = None,
    act_bits: int = 8,
    seed: int = 0,
    progress: bool = True,
    calibration: str = "max",
    percentile: float = 99.99,
    **options: Any,
) -> QuantizeResult:
    """Quantize ``model`` with ``method`` to an integer network, and measure it.

    Parameters
    ----------
    model : nn.Module or str
        the float model (not modified), or a workload name of
        :data:`hwq.workloads.WORKLOADS` (``"digits"``, ``"lenet5"``, ``"resnet8"``,
        ``"sepnet"``), which also supplies ``data``.
    method : str, default "uniform"
        a name of :data:`hwq.quant.methods.METHODS` (the one list of methods and their
        bit ranges; :func:`hwq.quant.methods.method_names` returns them).
    bits : int, float or None
        weight code width; the range depends on the method (tq: average bits per weight,
        fractional; joint: the widest layer, optional).
    data : object
        ``x_train``, ``y_train`` (training and calibration), ``x_test``, ``y_test``
        (accuracies), like :class:`hwq.workloads.digits.DigitsData`.
    act_bits : int, default 8
        activation width, 2..16.
    seed : int, default 0
    progress : bool, default True
        progress bars on stderr while training.
    calibration : {"max", "percentile"}, default "max"
        activation-scale calibration on ``data.x_train``.
    percentile : float, default 99.99
    **options
        method options (e.g. ``epochs``, ``lr``); unknown ones raise ``TypeError``. A named
        workload adds its own defaults (:attr:`hwq.workloads.Workload.method_options`).

    Returns
    -------
    QuantizeResult

    Raises
    ------
    ValueError
        unknown or unavailable method (naming the allowed ones), unsupported ``bits``,
        unsupported layer, bad settings.
    """
    t0 = time.perf_counter()
    spec = get_method(method)
    bits = spec.check_bits(method, bits)
    if isinstance(act_bits, bool) or not isinstance(act_bits, int) or not 2 <= act_bits <= 16:
        raise ValueError(f"Activation bits must be an integer in 2..16, not {act_bits!r}")
    if calibration not in CALIBRATIONS:
        raise ValueError(f"Calibration must be one of {', '.join(CALIBRATIONS)}, "
                         f"not {calibration!r}")
    try:
        func = spec.load()
    except ValueError as exc:
        raise ValueError(f"Method {method!r} {exc}") from None
    if isinstance(model, str):
        options = {**get_workload(model).method_options.get(method, {}), **options}
        model, default_data = load_workload(model, progress=progress)
        data = default_data if data is None else data
    if data is None:
        raise ValueError("quantize needs data (x_train, y_train, x_test, y_test) for "
                         "calibration and accuracy")
    timings = {"load": time.perf_counter() - t0}

    t = time.perf_counter()
    fp32_accuracy = evaluate(model, data.x_test, data.y_test)
    folded = fold_batchnorm(model)
    timings["fold"] = time.perf_counter() - t

    t = time.perf_counter()
    shared = dict(act_bits=act_bits, calibration=calibration, percentile=percentile)
    accepted = _parameters(func)
    call_options = {k: v for k, v in shared.items() if k in accepted and k not in options}
    call_options.update(options)
    out = func(folded, data, bits=bits, seed=seed, progress=progress, **call_options)
    if isinstance(out, Mapping):  # the usual: name -> QuantizedWeight (joint adds .info)
        qweights, info = out, dict(getattr(out, "info", None) or {})
    else:  # a method that changes the model's structure (tq): (model, qweights, info)
        folded, qweights, info = out
        info = dict(info)
    timings["method"] = time.perf_counter() - t

    t = time.perf_counter()
    fq = fake_quant_model(folded, qweights, data.x_train, act_bits=act_bits,
                          calibration=calibration, percentile=percentile)
    network = fq.to_network()
    timings["integerize"] = time.perf_counter() - t

    t = time.perf_counter()
    y = data.y_test.numpy()
    x_test = folded.prepare_input(data.x_test)      # 1-D models: (N, C, L) -> (N, C, 1, L)
    golden = run(network, quantize_input(x_test.numpy(), network.input_scale,
                                         network.act_bits))
    mirror = fq.to_int(data.x_test)  # the torch model's exact path
    accuracy = _accuracy(golden, y)
    fake_quant_accuracy = 100.0 * float(  # torch.argmax: also the first of tied maxima
        (mirror.argmax(dim=1) == data.y_test).sum()) / len(y)
    mirror = mirror.numpy()
    mismatches = int((golden != mirror).reshape(len(y), -1).any(axis=1).sum())
    fq.exact = False
    try:
        float_accuracy = evaluate(fq, data.x_test, data.y_test)
    finally:
        fq.exact = True
    weight_only_accuracy = evaluate(folded, data.x_test, data.y_test)
    timings["evaluate"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    weight_bits = network.weight_storage_bits()
    # tq adds basis layers: the ratio is against the ORIGINAL network's fp32 weights
    weight_count = int(info.get("original_weight_count", network.weight_count()))
    if "total_bits" in info:  # joint: the sparse weight stream (values, positions, tables)
        weight_bits = int(info["total_bits"])
    result = QuantizeResult(
        network=network, method=method, bits=bits, act_bits=act_bits, seed=seed,
        fp32_accuracy=fp32_accuracy, weight_only_accuracy=weight_only_accuracy,
        fake_quant_accuracy=fake_quant_accuracy, fake_quant_float_accuracy=float_accuracy,
        accuracy=accuracy, output_mismatches=mismatches, weight_bits_total=weight_bits,
        weight_count=weight_count, compression_ratio=32 * weight_count / weight_bits,
        timings=timings, options={**call_options, "calibration": calibration,
                                  **({"percentile": percentile}
                                     if calibration == "percentile" else {})},
        qweights=dict(qweights), model=folded, fake_quant_model=fq, info=info,
    )
    summary = result.to_dict()
    network.meta.update({k: summary[k] for k in (
        "method", "bits", "act_bits", "seed", "options", "fp32_accuracy", "accuracy",
        "fake_quant_accuracy", "weight_bits_total", "compression_ratio")})
    return result


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent; ``np.argmax`` takes the first of tied maxima."""
    return 100.0 * float((outputs.argmax(axis=1) == labels).sum()) / len(labels)


def _parameters(func: Callable[..., Any]) -> set[str]:
    """Names of the parameters ``func`` declares explicitly (not through ``**kwargs``)."""
    return {name for name, p in inspect.signature(func).parameters.items()
            if p.kind is not inspect.Parameter.VAR_KEYWORD}
