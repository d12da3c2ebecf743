"""Float models as hwq graphs: trace a ``torch.nn.Module``, fold BatchNorm, check every layer.

:func:`trace` walks the ``torch.fx`` graph of a model and returns a :class:`GraphModel`:
the model's supported layers (deep copies) and the nodes that connect them, in execution
order. A node is one of

============  ===============================================================================
``conv``      ``nn.Conv2d`` (any groups, kernel, stride, dilation; integer or ``'same'`` /
              ``'valid'`` zero padding), ``nn.Conv1d`` (as a 2-D conv with ``H = 1``)
``linear``    ``nn.Linear``
``bn``        ``nn.BatchNorm2d`` / ``nn.BatchNorm1d`` (folded into the conv before it)
``clamp``     ``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardtanh``, ``F.relu``, ``F.relu6``,
              ``F.hardtanh``, ``torch.clamp``, ``x.relu()``, ``x.clamp()``: float bounds
``maxpool``   ``nn.MaxPool2d`` / ``nn.MaxPool1d``, ``F.max_pool2d`` (no ``ceil_mode``, dilation)
``avgpool``   ``nn.AvgPool2d`` / ``nn.AvgPool1d``, ``F.avg_pool2d`` (``count_include_pad``)
``gap``       ``nn.AdaptiveAvgPool2d(1)`` / ``nn.AdaptiveAvgPool1d(1)``,
              ``F.adaptive_avg_pool2d(x, 1)``
``add``       ``x + y``, ``torch.add(x, y)``, ``x += y`` of two tensors
``flatten``   ``nn.Flatten()``, ``torch.flatten(x, 1)``, ``x.flatten(1)``,
              ``x.view(x.size(0), -1)``, ``x.reshape(n, -1)``
============  ===============================================================================

``nn.Dropout``, ``nn.Identity``, ``QuantStub``/``DeQuantStub`` and ``F.dropout`` vanish (they
are the identity in eval mode). Anything else is refused with the node's name, its type and
the reason. A model with 1-D layers takes its ``(N, C, L)`` input as ``(N, C, 1, L)``.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = ["FloatNode", "GraphModel", "conv_padding", "fold_batchnorm", "trace"]

INPUT = "input"
_DROPS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
_ONE_D = (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d)
SUPPORTED = ("Conv2d/Conv1d, BatchNorm2d/1d after a conv, ReLU, ReLU6, Hardtanh, clamp, "
             "MaxPool2d/1d, AvgPool2d/1d, AdaptiveAvgPool2d(1), add, Flatten, Linear, "
             "Dropout, Identity")


@dataclass(frozen=True)
class FloatNode:
    """One node of a :class:`GraphModel`.

    ``inputs`` names the nodes (or ``"input"``) it reads; ``params`` holds a clamp's float
    bounds (``lo``, ``hi``, +-inf when open).
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)


class GraphModel(nn.Module):
    """A float model in hwq's vocabulary: its layers as children, named like the nodes.

    ``forward`` runs the nodes in order. The children are registered under the node names,
    so ``named_children()`` lists the layers in execution order, as an ``nn.Sequential``
    would; a chain of layers behaves exactly like one.

    Parameters
    ----------
    nodes : list of FloatNode
    modules : dict of str to nn.Module
        one per node of kind conv, linear, bn, maxpool, avgpool, gap, clamp, flatten.
    one_d : bool
        the model's layers are 1-D: ``(N, C, L)`` inputs are run as ``(N, C, 1, L)``.
    """

    def __init__(self, nodes: list[FloatNode], modules: dict[str, nn.Module], *,
                 one_d: bool = False) -> None:
        super().__init__()
        self.nodes = list(nodes)
        self.one_d = bool(one_d)
        for node in self.nodes:
            if node.name in modules:
                self.add_module(node.name, modules[node.name])

    @property
    def output(self) -> str:
        return self.nodes[-1].name

    def consumers(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {INPUT: []}
        for node in self.nodes:
            out[node.name] = []
            for t in node.inputs:
                out[t].append(node.name)
        return out

    def is_chain(self) -> bool:
        prev = INPUT
        for node in self.nodes:
            if node.inputs != (prev,):
                return False
            prev = node.name
        return True

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input as the 2-D layers take it (``(N, C, L) -> (N, C, 1, L)`` for 1-D)."""
        return x.unsqueeze(2) if self.one_d and x.dim() == 3 else x

    def __getitem__(self, key: int | str) -> nn.Module:
        """A layer by position among the children (as in ``nn.Sequential``) or by name."""
        children = dict(self.named_children())
        return children[key] if isinstance(key, str) else list(children.values())[key]

    def __iter__(self):
        return iter(dict(self.named_children()).values())

    def __len__(self) -> int:
        return len(dict(self.named_children()))

    def _step(self, node: FloatNode, args: list[torch.Tensor]) -> torch.Tensor:
        return args[0] + args[1] if node.kind == "add" else getattr(self, node.name)(args[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_all(x)[self.output]

    def run_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every node's output (and ``"input"``), by name."""
        env = {INPUT: self.prepare_input(x)}
        for node in self.nodes:
            env[node.name] = self._step(node, [env[t] for t in node.inputs])
        return env

    def run_rest(self, env: dict[str, torch.Tensor], name: str, value: torch.Tensor
                 ) -> torch.Tensor:
        """The output with node ``name``'s output replaced by ``value``.

        ``env`` holds every node's output of a reference run (:meth:`run_all`); ``value``
        may stack ``g`` alternatives along the batch axis (``g`` times the reference batch):
        the other tensors the downstream nodes read are repeated to match. Only the nodes
        that depend on ``name`` are computed.
        """
        g = value.shape[0] // env[INPUT].shape[0]
        new = {name: value}
        for node in self.nodes:
            if not any(t in new for t in node.inputs):
                continue
            args = [new[t] if t in new else env[t].repeat(g, *([1] * (env[t].dim() - 1)))
                    for t in node.inputs]
            new[node.name] = self._step(node, args)
        return new.get(self.output, value if name == self.output else env[self.output])


# ------------------------------------------------------------------------------- tracing
class _Refused(ValueError):
    pass


def _refuse(node: fx.Node, what: str, why: str | None) -> _Refused:
    """``Unsupported layer 'features.2' (Conv2d with padding_mode='reflect'; only 'zeros');
    hwq supports ...`` (``why`` None: the type itself is not supported)."""
    detail = what if why is None else f"{what} with {why}"
    if node.op == "call_module":
        return _Refused(f"Unsupported layer {node.target!r} ({detail}); hwq supports "
                        f"{SUPPORTED}")
    return _Refused(f"Unsupported operation {node.name!r} ({detail}); hwq supports "
                    f"{SUPPORTED}")


def trace(model: nn.Module) -> GraphModel:
    """The model as a :class:`GraphModel` (deep copies of its layers; ``model`` untouched).

    Raises
    ------
    ValueError
        naming the first node hwq cannot run, its type and why.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Model must be a torch.nn.Module, not {type(model).__name__}")
    if isinstance(model, GraphModel):
        return copy.deepcopy(model)
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many kinds of errors on untraceable code
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"Model {type(model).__name__} is not torch.fx-traceable ({first}); "
                         f"hwq takes a torch.fx-traceable model of {SUPPORTED}") from None
    mods = dict(model.named_modules())
    nodes: list[FloatNode] = []
    modules: dict[str, nn.Module] = {}
    alias: dict[fx.Node, str] = {}       # fx node -> the hwq tensor it is
    sizes: set[fx.Node] = set()          # x.size(0) nodes feeding a flattening view
    names: set[str] = {INPUT}
    one_d = any(isinstance(m, _ONE_D) for m in mods.values())
    two_d = any(isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.MaxPool2d | nn.AvgPool2d
                           | nn.AdaptiveAvgPool2d) for m in mods.values())
    if one_d and two_d:
        raise ValueError(f"Model {type(model).__name__} mixes 1-D and 2-D layers; hwq takes "
                         "one or the other")

    def tensor(a: object, node: fx.Node) -> str:
        if not isinstance(a, fx.Node) or a not in alias:
            raise _refuse(node, "argument", f"reads {a!r}, which is not a traced tensor")
        return alias[a]

    def add(node: fx.Node, kind: str, inputs: list[str], module: nn.Module | None = None,
            **params: Any) -> None:
        base = str(node.target).replace(".", "_") if node.op == "call_module" else node.name
        name, k = base, 1
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.add(name)
        nodes.append(FloatNode(name, kind, tuple(inputs), params))
        if module is not None:
            modules[name] = module
        alias[node] = name

    for node in graph.nodes:
        if node.op == "placeholder":
            if alias:
                raise ValueError(f"hwq supports models with a single input, not "
                                 f"{type(model).__name__} with several")
            alias[node] = INPUT
            continue
        if node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node) or out not in alias:
                raise ValueError(f"The model output must be a single tensor, not {out!r}")
            if alias[out] == INPUT:
                raise ValueError("The model returns its input: there is nothing to run")
            if nodes[-1].name != alias[out]:
                raise ValueError(f"The model output must be the last layer's output "
                                 f"({nodes[-1].name!r}), not {alias[out]!r}")
            break
        if node.op == "get_attr":
            raise _refuse(node, "parameter access", "parameters must belong to layers")
        if node.op == "call_method" and node.target == "size":
            sizes.add(node)
            continue
        if node.op == "call_module":
            _module_node(node, mods[node.target], tensor, add, alias)
        else:
            _function_node(node, tensor, add, alias, sizes)
    if not nodes:
        raise ValueError(f"Model {type(model).__name__} has no layer hwq runs")
    g = GraphModel(nodes, modules, one_d=one_d)
    unread = [n for n, c in g.consumers().items() if not c and n != g.output]
    if unread:
        raise ValueError(f"The output of {unread} is never used; hwq runs models with one "
                         "output")
    return g.eval()


def _module_node(node, m, tensor, add, alias) -> None:
    x = tensor(node.args[0], node) if node.args else None
    what = type(m).__name__
    if isinstance(m, _DROPS) or type(m).__name__ in ("QuantStub", "DeQuantStub"):
        alias[node] = x
        return
    if type(m) is nn.Conv2d or type(m) is nn.Conv1d:
        add(node, "conv", [x], _conv2d(m, node))
    elif type(m) is nn.Linear:
        add(node, "linear", [x], copy.deepcopy(m))
    elif type(m) in (nn.BatchNorm2d, nn.BatchNorm1d):
        if m.running_mean is None or m.running_var is None:
            raise _refuse(node, what, "no running statistics; only track_running_stats=True")
        add(node, "bn", [x], copy.deepcopy(m))
    elif type(m) in (nn.ReLU, nn.ReLU6, nn.Hardtanh):
        lo, hi = (0.0, math.inf) if type(m) is nn.ReLU else (float(m.min_val), float(m.max_val))
        add(node, "clamp", [x], nn.Hardtanh(lo, hi) if math.isfinite(hi) else nn.ReLU(),
            lo=lo, hi=hi, what=what)
    elif type(m) in (nn.MaxPool2d, nn.MaxPool1d):
        if m.ceil_mode or m.return_indices or _tuple(m.dilation, 1) != 1:
            raise _refuse(node, what, "ceil_mode, return_indices and dilation are not supported")
        add(node, "maxpool", [x], _pool2d(nn.MaxPool2d, m.kernel_size, m.stride, m.padding,
                                          type(m) is nn.MaxPool1d))
    elif type(m) in (nn.AvgPool2d, nn.AvgPool1d):
        _check_avg(node, what, m.ceil_mode, m.count_include_pad, m.padding,
                   getattr(m, "divisor_override", None))
        add(node, "avgpool", [x], _pool2d(nn.AvgPool2d, m.kernel_size, m.stride, m.padding,
                                          type(m) is nn.AvgPool1d))
    elif type(m) in (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d):
        if m.output_size not in (1, (1,), (1, 1)):
            raise _refuse(node, what, f"output_size {m.output_size}; only 1 (global pooling)")
        add(node, "gap", [x], nn.AdaptiveAvgPool2d(1))
    elif type(m) is nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            raise _refuse(node, what, f"start_dim={m.start_dim}, end_dim={m.end_dim}; "
                                      "only 1, -1")
        add(node, "flatten", [x], nn.Flatten())
    else:
        raise _refuse(node, what, None)
    if len(node.args) != 1 or node.kwargs:
        raise _refuse(node, what, "arguments besides its input")


def _function_node(node, tensor, add, alias, sizes) -> None:
    target = node.target
    what = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    args, kwargs = list(node.args), dict(node.kwargs)
    if target in (operator.add, operator.iadd, torch.add, "add", "add_"):
        if len(args) != 2 or kwargs or not all(isinstance(a, fx.Node) for a in args):
            raise _refuse(node, str(what), "only the sum of two tensors (no alpha, no constant)")
        add(node, "add", [tensor(args[0], node), tensor(args[1], node)])
        return
    x = tensor(args[0], node) if args else None
    rest = args[1:]
    if target in (F.dropout, "contiguous") or (target == "dropout"):
        alias[node] = x
        return
    if target in (F.relu, torch.relu, "relu", "relu_") and not rest:
        add(node, "clamp", [x], nn.ReLU(), lo=0.0, hi=math.inf, what="relu")
        return
    if target in (F.relu6,):
        add(node, "clamp", [x], nn.Hardtanh(0.0, 6.0), lo=0.0, hi=6.0, what="relu6")
        return
    if target in (F.hardtanh, torch.clamp, "clamp", "clamp_"):
        names = ("min_val", "max_val") if target is F.hardtanh else ("min", "max")
        p = dict(zip(names, rest, strict=False))
        p.update(kwargs)
        p.pop("inplace", None)
        default = (-1.0, 1.0) if target is F.hardtanh else (-math.inf, math.inf)
        lo, hi = (p.get(n, d) for n, d in zip(names, default, strict=True))
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
        if not all(isinstance(v, int | float) for v in (lo, hi)) or lo > hi:
            raise _refuse(node, str(what), f"bounds {lo!r}, {hi!r} must be constant numbers")
        add(node, "clamp", [x], nn.Hardtanh(float(lo), float(hi)), lo=float(lo), hi=float(hi),
            what=str(what))
        return
    if target in (torch.flatten, "flatten"):
        start = rest[0] if rest else kwargs.get("start_dim", 0 if target is torch.flatten
                                                else 0)
        end = rest[1] if len(rest) > 1 else kwargs.get("end_dim", -1)
        if start == 1 and end == -1:
            add(node, "flatten", [x], nn.Flatten())
            return
    if target in ("view", "reshape") and len(rest) == 2 and rest[1] == -1 \
            and (rest[0] in sizes or rest[0] == -1) and not kwargs:
        add(node, "flatten", [x], nn.Flatten())
        return
    if target in (F.max_pool2d, F.avg_pool2d):
        names = ("kernel_size", "stride", "padding", "dilation" if target is F.max_pool2d
                 else "ceil_mode", "ceil_mode" if target is F.max_pool2d
                 else "count_include_pad")
        p = dict(zip(names, rest, strict=False))
        p.update(kwargs)
        if target is F.max_pool2d:
            if p.get("ceil_mode") or p.get("return_indices") or \
                    _tuple(p.get("dilation", 1), 1) != 1:
                raise _refuse(node, str(what), "ceil_mode, return_indices and dilation are "
                                               "not supported")
            add(node, "maxpool", [x], _pool2d(nn.MaxPool2d, p["kernel_size"], p.get("stride"),
                                              p.get("padding", 0), False))
        else:
            _check_avg(node, str(what), p.get("ceil_mode", False),
                       p.get("count_include_pad", True), p.get("padding", 0),
                       p.get("divisor_override"))
            add(node, "avgpool", [x], _pool2d(nn.AvgPool2d, p["kernel_size"], p.get("stride"),
                                              p.get("padding", 0), False))
        return
    if target is F.adaptive_avg_pool2d and rest and rest[0] in (1, (1, 1)):
        add(node, "gap", [x], nn.AdaptiveAvgPool2d(1))
        return
    if target is operator.getitem:
        what = "indexing"
    raise _refuse(node, str(what), None)


def _tuple(v: Any, n: int) -> Any:
    """A single value when all entries of ``v`` are equal."""
    if isinstance(v, tuple | list):
        return v[0] if len(set(v)) == 1 else tuple(v)
    return v


def _pool2d(cls: type, kernel: Any, stride: Any, padding: Any, one_d: bool) -> nn.Module:
    def as2(v: Any, fill: int) -> tuple[int, int]:
        if isinstance(v, tuple | list):
            return (fill, int(v[0])) if one_d else (int(v[0]), int(v[1]))
        return (fill, int(v)) if one_d else (int(v), int(v))
    k = as2(kernel, 1)
    s = k if stride in (None, (), []) else as2(stride, 1)
    p = as2(padding, 0)
    return cls(k, s, p)


def _check_avg(node, what, ceil_mode, count_include_pad, padding, divisor) -> None:
    pad = padding if isinstance(padding, tuple | list) else (padding,)
    if ceil_mode or divisor is not None or (not count_include_pad and any(pad)):
        raise _refuse(node, str(what), "ceil_mode, divisor_override and "
                                       "count_include_pad=False with padding are not supported")


def _conv2d(m: nn.Conv1d | nn.Conv2d, node: fx.Node) -> nn.Conv2d:
    """A copy of ``m`` as an ``nn.Conv2d`` with numeric padding (a Conv1d as ``H = 1``);
    padding that differs between the two sides of an axis (``'same'`` with an even kernel)
    gives a :class:`PaddedConv2d`."""
    if m.padding_mode != "zeros":
        raise _refuse(node, type(m).__name__, f"padding_mode={m.padding_mode!r}; only 'zeros'")
    one = type(m) is nn.Conv1d
    k = (1, m.kernel_size[0]) if one else tuple(m.kernel_size)
    s = (1, m.stride[0]) if one else tuple(m.stride)
    d = (1, m.dilation[0]) if one else tuple(m.dilation)
    if isinstance(m.padding, str):
        if m.padding == "valid":
            pad = (0, 0, 0, 0)
        else:  # 'same' (stride 1): PyTorch puts the odd extra row/column at the end
            th, tw = d[0] * (k[0] - 1), d[1] * (k[1] - 1)
            pad = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        ph, pw = (0, m.padding[0]) if one else tuple(m.padding)
        pad = (ph, ph, pw, pw)
    common = dict(stride=s, dilation=d, groups=m.groups, bias=m.bias is not None)
    if pad[0] == pad[1] and pad[2] == pad[3]:       # symmetric: a plain nn.Conv2d
        conv = nn.Conv2d(m.in_channels, m.out_channels, k, padding=(pad[0], pad[2]), **common)
    else:
        conv = PaddedConv2d(m.in_channels, m.out_channels, k, hwq_padding=pad, **common)
    with torch.no_grad():
        w = m.weight.detach().clone()
        conv.weight.copy_(w.unsqueeze(2) if one else w)
        if m.bias is not None:
            conv.bias.copy_(m.bias.detach())
    return conv.to(m.weight.dtype)


def conv_padding(m: nn.Conv2d) -> tuple[int, int, int, int]:
    """Zero padding ``(top, bottom, left, right)`` of a conv module."""
    if isinstance(m, PaddedConv2d):
        return m.hwq_padding
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0, 0, 0, 0)
        th, tw = (d * (k - 1) for d, k in zip(m.dilation, m.kernel_size, strict=True))
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    ph, pw = m.padding
    return (ph, ph, pw, pw)


class PaddedConv2d(nn.Conv2d):
    """``nn.Conv2d`` with zero padding given per side, ``hwq_padding = (top, bottom, left,
    right)``; ``padding`` itself is 0."""

    def __init__(self, *args: Any, hwq_padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                 **kwargs: Any) -> None:
        super().__init__(*args, padding=0, **kwargs)
        self.hwq_padding = tuple(int(p) for p in hwq_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b, l, r = self.hwq_padding
        return super().forward(F.pad(x, (l, r, t, b)) if any(self.hwq_padding) else x)


# ------------------------------------------------------------------------------- folding
def fold_batchnorm(model: nn.Module) -> GraphModel:
    """A BatchNorm-free :class:`GraphModel` of ``model``: each conv + BatchNorm is one conv.

    With ``g = gamma / sqrt(running_var + eps)`` per output channel, ``W' = W * g[c]`` and
    ``b' = (b - running_mean) * g + beta`` (float64; a conv without bias gets one), so the
    folded model computes what ``model`` computes in eval mode. ``model`` is not modified.

    Raises
    ------
    ValueError
        for an unsupported layer (:func:`trace`) or a BatchNorm that does not directly
        follow a conv whose only reader it is.
    """
    g = trace(model)
    readers = g.consumers()
    nodes: list[FloatNode] = []
    modules: dict[str, nn.Module] = dict(g.named_children())
    rename: dict[str, str] = {}
    kinds = {n.name: n for n in g.nodes}
    for node in g.nodes:
        inputs = tuple(rename.get(t, t) for t in node.inputs)
        if node.kind == "bn":
            src = kinds.get(node.inputs[0])
            bn = modules.pop(node.name)
            if src is None or src.kind != "conv" or readers[src.name] != [node.name] \
                    or modules[src.name].out_channels != bn.num_features:
                raise ValueError(f"{type(bn).__name__} {node.name!r} must directly follow a "
                                 f"Conv2d/Conv1d with {bn.num_features} output channels that "
                                 "nothing else reads, to be folded")
            _fold_into(modules[src.name], bn)
            rename[node.name] = inputs[0]
            continue
        nodes.append(FloatNode(node.name, node.kind, inputs, node.params))
    return GraphModel(nodes, modules, one_d=g.one_d).eval()


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> None:
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
