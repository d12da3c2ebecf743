"""A ``torch.export`` program (``.pt2``) as an ``nn.Module`` for :func:`hwq.quant.graph.trace`.

``torch.export.save`` writes a model's graph of ATen operators with its parameters, without
its Python source. :func:`load_exported` reads it with ``torch.export.load`` and rebuilds the
graph from standard modules (each ATen call becomes the ``nn`` module of the same meaning,
holding the program's own weights), so a ``.pt2`` file goes through the same tracer, folding
and quantization as a model written in Python. The vocabulary (:data:`ATEN_OPS`) is the one
of :data:`hwq.quant.graph.SUPPORTED`; any other operator is refused by name.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

__all__ = ["ATEN_OPS", "load_exported"]


def _aten(name: str) -> str:
    return f"aten.{name}"


def _arg(node: fx.Node, i: int, name: str, default: Any) -> Any:
    """Argument ``i`` (or keyword ``name``) of an ATen call, else its schema default."""
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _rank(node: fx.Node) -> int:
    """Rank of the tensor a node produces (from the export's shape metadata)."""
    val = node.meta.get("val")
    if val is None or not hasattr(val, "dim"):
        raise ValueError(f"The exported graph has no shape for {node.name}")
    return val.dim()


class _Builder:
    """Turns each ATen call of an exported graph into a module or an ``fx`` function call."""

    def __init__(self, params: dict[str, torch.Tensor]) -> None:
        self.params = params
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.env: dict[fx.Node, fx.Node] = {}

    # --- helpers -----------------------------------------------------------------------------
    def tensor(self, node: Any) -> torch.Tensor | None:
        if node is None:
            return None
        if not isinstance(node, fx.Node) or node.name not in self.params:
            raise ValueError(f"The exported graph computes a weight ({node}); hwq takes "
                             "weights that are parameters or buffers of the program")
        return self.params[node.name].detach().clone()

    def module(self, node: fx.Node, module: nn.Module, x: fx.Node) -> fx.Node:
        name = self._name(node)
        self.root.add_module(name, module)
        return self.graph.call_module(name, (self.env[x],))

    def _name(self, node: fx.Node) -> str:
        """The original module path of the node's first weight (``features.0``), else its own."""
        stack = node.meta.get("nn_module_stack")
        if stack:
            path = list(stack.values())[-1][0]
            base = path.replace(".", "_") or node.name
        else:
            base = node.name
        name, i = base, 1
        while hasattr(self.root, name):
            i += 1
            name = f"{base}_{i}"
        return name

    # --- the operators -----------------------------------------------------------------------
    def conv(self, node: fx.Node) -> fx.Node:
        one_d = "conv1d" in str(node.target)
        weight = self.tensor(node.args[1])
        bias = self.tensor(_arg(node, 2, "bias", None))
        n = 1 if one_d else 2
        stride = _arg(node, 3, "stride", [1] * n)
        padding = _arg(node, 4, "padding", [0] * n)
        dilation = _arg(node, 5, "dilation", [1] * n)
        groups = _arg(node, 6, "groups", 1)
        cls = nn.Conv1d if one_d else nn.Conv2d
        m = cls(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                stride=stride, padding=padding, dilation=dilation, groups=groups,
                bias=bias is not None)
        with torch.no_grad():
            m.weight.copy_(weight)
            if bias is not None:
                m.bias.copy_(bias)
        return self.module(node, m, node.args[0])

    def linear(self, node: fx.Node) -> fx.Node:
        weight = self.tensor(node.args[1])
        bias = self.tensor(_arg(node, 2, "bias", None))
        m = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            m.weight.copy_(weight)
            if bias is not None:
                m.bias.copy_(bias)
        return self.module(node, m, node.args[0])

    def batch_norm(self, node: fx.Node) -> fx.Node:
        weight, bias = self.tensor(node.args[1]), self.tensor(node.args[2])
        mean, var = self.tensor(node.args[3]), self.tensor(node.args[4])
        if mean is None or var is None:
            raise ValueError(f"{node.name}: a batch norm without running statistics cannot be "
                             "folded; export the model in eval mode")
        eps = float(_arg(node, 7, "eps", 1e-5))
        cls = nn.BatchNorm2d if _rank(node.args[0]) == 4 else nn.BatchNorm1d
        m = cls(mean.numel(), eps=eps, affine=weight is not None).eval()
        with torch.no_grad():
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            if weight is not None:
                m.weight.copy_(weight)
                m.bias.copy_(bias if bias is not None else torch.zeros_like(weight))
        return self.module(node, m, node.args[0])

    def relu(self, node: fx.Node) -> fx.Node:
        return self.module(node, nn.ReLU(), node.args[0])

    def hardtanh(self, node: fx.Node) -> fx.Node:
        lo, hi = float(_arg(node, 1, "min_val", -1.0)), float(_arg(node, 2, "max_val", 1.0))
        m = nn.ReLU6() if (lo, hi) == (0.0, 6.0) else nn.Hardtanh(lo, hi)
        return self.module(node, m, node.args[0])

    def relu6(self, node: fx.Node) -> fx.Node:
        return self.module(node, nn.ReLU6(), node.args[0])

    def clamp(self, node: fx.Node) -> fx.Node:
        """``clamp(x, lo, hi)``/``clamp_min(x, lo)``: ReLU when ``lo`` is 0 and ``hi`` absent."""
        lo = _arg(node, 1, "min", None)
        hi = None if "clamp_min" in str(node.target) else _arg(node, 2, "max", None)
        if lo is None or isinstance(lo, fx.Node) or isinstance(hi, fx.Node):
            raise ValueError(f"{node.name}: hwq clamps to constant bounds with a lower bound, "
                             f"not min={lo}, max={hi}")
        m = (nn.ReLU() if (lo, hi) == (0, None) else nn.ReLU6() if (lo, hi) == (0, 6)
             else nn.Hardtanh(float(lo), float(hi) if hi is not None else float("inf")))
        return self.module(node, m, node.args[0])

    def max_pool(self, node: fx.Node) -> fx.Node:
        kernel = node.args[1]
        m = nn.MaxPool2d(kernel, stride=_arg(node, 2, "stride", []) or kernel,
                         padding=_arg(node, 3, "padding", 0),
                         dilation=_arg(node, 4, "dilation", 1),
                         ceil_mode=_arg(node, 5, "ceil_mode", False))
        return self.module(node, m, node.args[0])

    def avg_pool(self, node: fx.Node) -> fx.Node:
        kernel = node.args[1]
        m = nn.AvgPool2d(kernel, stride=_arg(node, 2, "stride", []) or kernel,
                         padding=_arg(node, 3, "padding", 0),
                         ceil_mode=_arg(node, 4, "ceil_mode", False),
                         count_include_pad=_arg(node, 5, "count_include_pad", True),
                         divisor_override=_arg(node, 6, "divisor_override", None))
        return self.module(node, m, node.args[0])

    def adaptive_avg_pool(self, node: fx.Node) -> fx.Node:
        return self.module(node, nn.AdaptiveAvgPool2d(tuple(node.args[1])), node.args[0])

    def mean(self, node: fx.Node) -> fx.Node:
        dims = sorted(d % _rank(node.args[0]) for d in _arg(node, 1, "dim", []))
        keep = bool(_arg(node, 2, "keepdim", False))
        if _rank(node.args[0]) != 4 or dims != [2, 3]:
            raise ValueError(f"{node.name}: a mean over dims {dims} of a rank-"
                             f"{_rank(node.args[0])} tensor; hwq takes the mean over the spatial "
                             "dims (2, 3) of an NCHW tensor (global average pooling)")
        pooled = self.module(node, nn.AdaptiveAvgPool2d(1), node.args[0])
        if keep:
            return pooled
        name = f"{node.name}_flatten"
        self.root.add_module(name, nn.Flatten())
        return self.graph.call_module(name, (pooled,))

    def flatten(self, node: fx.Node) -> fx.Node:
        start = _arg(node, 1, "start_dim", 0)
        end = _arg(node, 2, "end_dim", -1)
        return self.module(node, nn.Flatten(start, end), node.args[0])

    def reshape(self, node: fx.Node) -> fx.Node:
        """``view``/``reshape`` that flattens all but the batch dim: ``nn.Flatten``."""
        src, out = node.args[0].meta.get("val"), node.meta.get("val")
        if src is None or out is None or out.dim() != 2 or src.shape[0] != out.shape[0]:
            shapes = [tuple(t.shape) if t is not None else "?" for t in (src, out)]
            raise ValueError(f"{node.name}: a reshape of {shapes[0]} to {shapes[1]}; hwq takes "
                             "reshapes that flatten all but the batch dimension")
        return self.module(node, nn.Flatten(), node.args[0])

    def identity(self, node: fx.Node) -> fx.Node:
        return self.env[node.args[0]]

    def add(self, node: fx.Node) -> fx.Node:
        alpha = node.kwargs.get("alpha", 1)
        a, b = node.args[0], node.args[1]
        if alpha != 1 or not isinstance(a, fx.Node) or not isinstance(b, fx.Node):
            raise ValueError(f"{node.name}: hwq adds two tensors (alpha 1), not "
                             f"{node.args}, alpha {alpha}")
        return self.graph.call_function(operator.add, (self.env[a], self.env[b]))


#: ATen operator (without overload) -> the builder method that maps it.
ATEN_OPS: dict[str, Callable[[_Builder, fx.Node], fx.Node]] = {
    **{_aten(n): _Builder.conv for n in ("conv2d", "conv1d")},
    _aten("linear"): _Builder.linear,
    _aten("batch_norm"): _Builder.batch_norm,
    _aten("_native_batch_norm_legit_no_training"): _Builder.batch_norm,
    **{_aten(n): _Builder.relu for n in ("relu", "relu_")},
    **{_aten(n): _Builder.hardtanh for n in ("hardtanh", "hardtanh_")},
    **{_aten(n): _Builder.relu6 for n in ("relu6", "relu6_")},
    **{_aten(n): _Builder.clamp for n in ("clamp", "clamp_", "clamp_min", "clamp_min_")},
    _aten("max_pool2d"): _Builder.max_pool,
    _aten("avg_pool2d"): _Builder.avg_pool,
    _aten("adaptive_avg_pool2d"): _Builder.adaptive_avg_pool,
    _aten("mean"): _Builder.mean,
    _aten("flatten"): _Builder.flatten,
    **{_aten(n): _Builder.reshape for n in ("view", "reshape", "_unsafe_view")},
    **{_aten(n): _Builder.identity for n in ("dropout", "dropout_", "clone", "contiguous",
                                             "alias", "detach")},
    **{_aten(n): _Builder.add for n in ("add", "add_")},
}


def _packet(target: Any) -> str:
    """``aten.conv2d`` of ``torch.ops.aten.conv2d.default``."""
    name = str(target)
    return name.rsplit(".", 1)[0] if name.count(".") >= 2 else name


def load_exported(path: str | os.PathLike[str]) -> nn.Module:
    """The model of a ``torch.export`` file as an ``nn.Module`` of standard layers (eval mode).

    Raises
    ------
    ValueError
        a file ``torch.export.load`` cannot read, a program with other than one tensor input
        and one tensor output, or an operator outside :data:`ATEN_OPS` (named).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"No exported model at {p}")
    try:
        program = torch.export.load(p)
    except Exception as exc:  # torch raises many kinds for a file that is not a program
        raise ValueError(f"{p} is not a torch.export program ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
                         ) from None
    sig = program.graph_signature
    stored = {**program.constants, **program.state_dict}  # non-persistent buffers: constants
    params = {spec.arg.name: stored[spec.target] for spec in sig.input_specs
              if spec.kind.name in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR")
              and spec.target in stored}
    user_inputs = [spec.arg.name for spec in sig.input_specs if spec.kind.name == "USER_INPUT"]
    user_outputs = [spec for spec in sig.output_specs if spec.kind.name == "USER_OUTPUT"]
    if len(user_inputs) != 1 or len(user_outputs) != 1:
        raise ValueError(f"{p}: hwq takes a program of one input tensor and one output tensor, "
                         f"not {len(user_inputs)} inputs and {len(user_outputs)} outputs")
    builder = _Builder(params)
    unknown: set[str] = set()
    for node in program.graph.nodes:
        if node.op == "placeholder":
            if node.name in user_inputs:
                builder.env[node] = builder.graph.placeholder("x")
        elif node.op == "call_function":
            method = ATEN_OPS.get(_packet(node.target))
            if method is None:
                unknown.add(_packet(node.target))
                continue
            if not unknown:
                builder.env[node] = method(builder, node)
        elif node.op == "output":
            if unknown:
                break
            (outs,) = node.args
            out = outs[0] if isinstance(outs, list | tuple) else outs
            builder.graph.output(builder.env[out])
    if unknown:
        allowed = ", ".join(sorted(ATEN_OPS))
        raise ValueError(f"{p} uses {', '.join(sorted(unknown))}, which hwq does not map; "
                         f"allowed: {allowed}")
    return fx.GraphModule(builder.root, builder.graph).eval()
