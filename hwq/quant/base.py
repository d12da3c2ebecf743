"""The common interface of the weight-quantization methods.

Every method (``uniform``, ``uniform-qat``, ``inq``, ``slq``, ``mlq``, ...) is a function ::

    quantize_<method>(model, data, *, bits, seed, progress, **options)
        -> dict[str, QuantizedWeight]

registered by name in :mod:`hwq.quant.methods`. Its contract:

* ``model`` is the **BatchNorm-folded** float model (:func:`fold_batchnorm`): an
  ``nn.Sequential`` whose weight layers are the ``Conv2d``/``Linear`` modules listed by
  :func:`weight_layers`. Methods that retrain do so without BatchNorm, in place.
* ``data`` has the tensors ``x_train``, ``y_train``, ``x_test``, ``y_test``
  (:class:`hwq.workloads.digits.DigitsData`); methods train on ``x_train``/``y_train`` only
  (:func:`hwq.workloads.train.fit`).
* ``bits`` is the weight code width; a value the method does not support raises
  ``ValueError`` naming the allowed range. ``seed`` seeds every random choice;
  ``progress`` shows progress bars on stderr. Unknown ``**options`` raise ``TypeError``.
* It returns one :class:`QuantizedWeight` per weight layer, keyed by the module name of
  :func:`weight_layers`, and leaves ``model`` holding the dequantized weights
  (:func:`apply_weights`), so that evaluating ``model`` gives the weight-only quantized
  accuracy. Biases stay float; :func:`hwq.quant.integerize.integerize` quantizes them.

Everything after the weights (activation scales, bias, requantization, the integer IR) is
:func:`hwq.quant.integerize.integerize`'s job and is common to all methods.
"""

from __future__ import annotations

import copy
import operator
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from hwq.ir import WeightSpec

__all__ = [
    "SUPPORTED",
    "QuantizedWeight",
    "apply_weights",
    "fold_batchnorm",
    "linearize",
    "weight_layers",
]

#: What :func:`linearize` accepts, for error messages.
SUPPORTED = "Conv2d, BatchNorm2d, ReLU, MaxPool2d(2), Flatten, Linear"


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """One layer's quantized weights: integer values, per-channel scale, storage format.

    The float weight the integers stand for is ``values * scale[c]`` for output channel
    ``c`` (:meth:`dequantize`).

    Parameters
    ----------
    values : int64 array, the layer's weight shape
        ``(C_out, C_in, k, k)`` or ``(C_out, K)``; every value representable in ``spec``.
    scale : float64 array, shape (C_out,)
        finite, positive weight scale of each output channel (a per-layer scale is repeated).
    spec : hwq.ir.WeightSpec
        the hardware format: kind ``"int"``/``"pot"``/``"codebook"``, bit widths broadcastable
        to the weight shape, the codebook table (``table_bits <= 8``).
    """

    values: np.ndarray
    scale: np.ndarray
    spec: WeightSpec

    def __post_init__(self) -> None:
        values = np.asarray(self.values)
        if values.dtype.kind not in "iu":
            raise TypeError(f"Quantized weight values must be integers, not dtype {values.dtype}")
        values = values.astype(np.int64)
        if values.ndim not in (2, 4):
            raise ValueError("Quantized weight values must be (C_out, K) or (C_out, C_in, k, k), "
                             f"not shape {values.shape}")
        scale = np.asarray(self.scale, dtype=np.float64).reshape(-1)
        if scale.shape != (values.shape[0],):
            raise ValueError(f"Weight scale must have one value per output channel, "
                             f"shape ({values.shape[0]},), not {scale.shape}")
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"Weight scales must be finite and positive, not {scale.tolist()}")
        if not isinstance(self.spec, WeightSpec):
            raise TypeError(f"spec must be an hwq.ir.WeightSpec, not {type(self.spec).__name__}")
        self.spec.validate(values, "Quantized weight")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "scale", scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def dequantize(self) -> np.ndarray:
        """The float64 weights ``values * scale[c]``, in the weight shape."""
        return self.values * self.scale.reshape((-1,) + (1,) * (self.values.ndim - 1))

    def storage_bits(self) -> int:
        """Bits of the weight codes plus the codebook table (as the IR counts them)."""
        return self.spec.storage_bits(self.shape) + self.spec.table_storage_bits()


# --- model structure ------------------------------------------------------------------------


def linearize(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model as a chain of supported layers, in execution order.

    ``nn.Sequential`` and any ``torch.fx``-traceable module whose graph is a single chain are
    accepted. Functional calls (``F.relu``, ``torch.flatten(x, 1)``, ``x.view(x.size(0), -1)``,
    ``F.max_pool2d(x, 2)``) become the equivalent modules, named after their graph node. Names
    are the modules' qualified names with ``.`` replaced by ``_`` (``features.3`` ->
    ``features_3``), so that they can name children of an ``nn.Sequential``.

    Raises
    ------
    ValueError
        naming the first unsupported layer or operation, or if the graph is not a chain.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Model must be a torch.nn.Module, not {type(model).__name__}")
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many kinds of errors on untraceable code
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"Model {type(model).__name__} is not torch.fx-traceable ({first}); "
                         "hwq takes an nn.Sequential or an fx-traceable chain of "
                         f"{SUPPORTED}") from None
    modules = dict(model.named_modules())
    layers: list[tuple[str, nn.Module]] = []
    current: fx.Node | None = None
    sizes: set[fx.Node] = set()  # x.size(0) nodes feeding a flattening view
    for node in graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise ValueError("hwq supports models with a single input, "
                                 f"not {type(model).__name__} with several")
            current = node
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise ValueError("The model output must be the last layer's output "
                                 "(a single chain of layers)")
            break
        if node.op == "call_method" and node.target == "size" and node.args[0] is current:
            sizes.add(node)
            continue
        inputs = [a for a in node.all_input_nodes if a not in sizes]
        if inputs != [current]:
            raise ValueError(f"Unsupported operation {node.name!r}: hwq supports a single chain "
                             f"of {SUPPORTED} (this node takes "
                             f"{[a.name for a in node.all_input_nodes]})")
        if node.op == "call_module":
            module = modules[node.target]
            _check_module(node.target, module)
            layers.append((node.target.replace(".", "_"), module))
        else:
            layers.append((node.name, _functional(node, sizes)))
        current = node
    return layers


def _check_module(name: str, m: nn.Module) -> None:
    """Raise ``ValueError`` naming ``m`` unless the hardware runs it as configured."""
    why = _unsupported_setting(m)
    if why is not None:
        raise ValueError(f"Unsupported layer {name!r} ({type(m).__name__}{why}); "
                         f"hwq supports {SUPPORTED}")


def _unsupported_setting(m: nn.Module) -> str | None:
    """``None`` if ``m`` is supported, else what is wrong (``""`` for the layer type)."""
    if type(m) is nn.Conv2d:
        if m.groups != 1:
            return f" with groups={m.groups}; only groups=1"
        if m.kernel_size[0] != m.kernel_size[1]:
            return f" with kernel {m.kernel_size}; only square kernels"
        if m.stride[0] != m.stride[1]:
            return f" with stride {m.stride}; only equal strides"
        if m.dilation != (1, 1):
            return f" with dilation {m.dilation}; only 1"
        if m.padding_mode != "zeros":
            return f" with padding_mode={m.padding_mode!r}; only 'zeros'"
        if isinstance(m.padding, str) or m.padding[0] != m.padding[1]:
            return f" with padding {m.padding!r}; only equal integer padding"
        return None
    if type(m) is nn.BatchNorm2d:
        if m.running_mean is None or m.running_var is None:
            return " without running statistics; only track_running_stats=True"
        return None
    if type(m) is nn.MaxPool2d:
        ok = (_pair(m.kernel_size) == (2, 2) and _pair(m.stride) == (2, 2)
              and _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1)
              and not m.ceil_mode and not m.return_indices)
        return None if ok else (f" with kernel {m.kernel_size}, stride {m.stride}, padding "
                                f"{m.padding}; only 2x2 with stride 2")
    if type(m) is nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            return f" with start_dim={m.start_dim}, end_dim={m.end_dim}; only 1, -1"
        return None
    if type(m) in (nn.ReLU, nn.Linear):
        return None
    return ""


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _functional(node: fx.Node, sizes: set[fx.Node]) -> nn.Module:
    """A module equivalent to a supported functional call, or ValueError."""
    target, args, kwargs = node.target, node.args[1:], dict(node.kwargs)
    desc = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    if target in (F.relu, torch.relu, "relu", "relu_") and not args:
        return nn.ReLU()
    if target in (torch.flatten, "flatten"):
        start = args[0] if args else kwargs.get("start_dim", 0)
        end = args[1] if len(args) > 1 else kwargs.get("end_dim", -1)
        if start == 1 and end == -1:
            return nn.Flatten()
    if target in ("view", "reshape") and len(args) == 2 and args[1] == -1 \
            and (args[0] in sizes or args[0] == -1) and not kwargs:
        return nn.Flatten()
    if target is F.max_pool2d:
        params = dict(zip(("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
                          args, strict=False))
        params.update(kwargs)
        k, s = params.get("kernel_size"), params.get("stride") or params.get("kernel_size")
        if k in (2, (2, 2)) and s in (2, (2, 2)) and params.get("padding", 0) in (0, (0, 0)) \
                and params.get("dilation", 1) in (1, (1, 1)) and not params.get("ceil_mode") \
                and not params.get("return_indices"):
            return nn.MaxPool2d(2)
    if target in (operator.getitem,):
        desc = "indexing"
    raise ValueError(f"Unsupported operation {node.name!r} ({desc}); hwq supports {SUPPORTED} "
                     "(as modules, or F.relu, torch.flatten(x, 1), F.max_pool2d(x, 2))")


def fold_batchnorm(model: nn.Module) -> nn.Sequential:
    """A BatchNorm-free copy of ``model``: each ``Conv2d`` + ``BatchNorm2d`` becomes one conv.

    With ``g = gamma / sqrt(running_var + eps)`` per output channel,
    ``W' = W * g[c]`` and ``b' = (b - running_mean) * g + beta`` (computed in float64), so
    the folded model computes what ``model`` computes in eval mode. The result is an
    ``nn.Sequential`` of the layers of :func:`linearize` (deep copies; ``model`` is not
    modified), named as there, in eval mode; a model without BatchNorm comes back as a copy.

    Raises
    ------
    ValueError
        for an unsupported layer (see :func:`linearize`) or a BatchNorm2d that does not
        directly follow a Conv2d.
    """
    out: OrderedDict[str, nn.Module] = OrderedDict()
    prev: nn.Module | None = None
    for name, m in linearize(model):
        if isinstance(m, nn.BatchNorm2d):
            if not isinstance(prev, nn.Conv2d) or prev.out_channels != m.num_features:
                raise ValueError(f"BatchNorm2d {name!r} must directly follow a Conv2d with "
                                 f"{m.num_features} output channels to be folded; hwq supports "
                                 f"{SUPPORTED}")
            _fold_into(prev, m)
            continue
        m = copy.deepcopy(m)
        out[name] = m
        prev = m
    folded = nn.Sequential(out)
    return folded.eval()


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    w = conv.weight.detach().double()
    c = w.shape[0]
    mean = bn.running_mean.double()
    var = bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones(c, dtype=torch.float64)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros(c, dtype=torch.float64)
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(c, dtype=w.dtype)
    g = gamma / torch.sqrt(var + bn.eps)
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter((w * g.reshape(-1, 1, 1, 1)).to(dtype))
    conv.bias = nn.Parameter(((b - mean) * g + beta).to(dtype))


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``Conv2d`` and ``Linear`` modules of ``model`` with their qualified names.

    In registration order, which for the ``nn.Sequential`` of :func:`fold_batchnorm` is the
    execution order.
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


@torch.no_grad()
def apply_weights(model: nn.Module, qweights: Mapping[str, QuantizedWeight]) -> None:
    """Set each named layer's ``weight`` to its dequantized view ``values * scale``.

    The weights are rounded once to the parameter's dtype; biases are left alone.

    Raises
    ------
    ValueError
        if a name is not a Conv2d/Linear of ``model`` or the shapes differ.
    """
    layers = dict(weight_layers(model))
    for name, qw in qweights.items():
        if name not in layers:
            raise ValueError(f"No Conv2d/Linear named {name!r} in the model; it has "
                             f"{sorted(layers)}")
        weight = layers[name].weight
        if tuple(weight.shape) != qw.shape:
            raise ValueError(f"Layer {name!r}: quantized weight of shape {qw.shape} does not "
                             f"match the weight shape {tuple(weight.shape)}")
        weight.copy_(torch.from_numpy(qw.dequantize()).to(weight.dtype))
