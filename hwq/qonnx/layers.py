"""The importer's layer nodes: each opens an integer accumulator (:class:`Acc`).

``Conv``, ``Gemm``/``MatMul``, ``GlobalAveragePool``/``ReduceMean``/``ReduceSum``,
``AveragePool``, ``Add`` of two quantized tensors; ``MaxPool`` (of a quantized tensor: an op;
of an accumulator: after its requantization). Two convolutions of one tensor summed merge
into one (how :mod:`hwq.qonnx.exporter` splits a wide layer).
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np

from hwq.golden._checks import signed_bits_for
from hwq.golden.eltwise import add_weights
from hwq.golden.window import conv_output_size
from hwq.ir import ADD_WEIGHT_MAX, MaxPool2d
from hwq.qonnx.values import Acc, Const, Ints, Refused, Weight, fractions, where


class LayerNodes:
    """Handlers ``_op_<type>(node, inputs, attributes)`` of the layers (a mixin of the
    importer, which provides ``_ints``, ``_weight``, ``_name``, ``_push`` and the folding
    of :class:`hwq.qonnx.folding.FoldingNodes`)."""

    def _op_Conv(self, node: Any, ins: list, attrs: dict) -> Acc:
        x = self._ints(ins[0], "its input")
        w = self._weight(ins[1], "its weight")
        if len(x.shape) != 3 or w.ints.ndim != 4:
            raise Refused(f"only 2-D convolutions are imported (input {x.shape}, weight "
                           f"{w.ints.shape})")
        groups = int(attrs.get("group", 1))
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise Refused(f"auto_pad {attrs['auto_pad']} (give explicit pads)")
        kh, kw = w.ints.shape[2:]
        stride = tuple(attrs.get("strides", (1, 1)))
        dil = tuple(attrs.get("dilations", (1, 1)))
        t, l, b, r = attrs.get("pads", (0, 0, 0, 0))
        c, h, wd = x.shape
        if w.ints.shape[1] * groups != c:
            raise Refused(f"weight {w.ints.shape} with group={groups} does not fit an input "
                           f"of {c} channels")
        shape = (w.ints.shape[0], conv_output_size(h, kh, stride[0], t, b, dil[0]),
                 conv_output_size(wd, kw, stride[1], l, r, dil[1]))
        params = dict(weight=w.ints, bits=self._bits(w, node), stride=stride,
                      padding=(t, b, l, r), dilation=dil, groups=groups)
        return self._layer(node, "conv2d", x, w, ins[2] if len(ins) > 2 else None, params,
                           shape)

    def _op_Gemm(self, node: Any, ins: list, attrs: dict) -> Acc:
        if attrs.get("transA", 0):
            raise Refused("transA=1 (the input must be (N, K))")
        w = self._weight(ins[1], "its weight")
        w = w if attrs.get("transB", 0) else w.transposed()
        acc = self._linear(node, ins[0], w, ins[2] if len(ins) > 2 else None,
                           Fraction(float(attrs.get("beta", 1.0))))
        alpha = Fraction(float(attrs.get("alpha", 1.0)))
        if alpha != 1:
            acc = self._times(acc, [alpha] * acc.channels)
        return acc

    def _op_MatMul(self, node: Any, ins: list, attrs: dict) -> Acc:
        return self._linear(node, ins[0], self._weight(ins[1], "its weight").transposed(),
                            None, Fraction(1))

    def _linear(self, node: Any, x_value: Any, w: Weight, bias: Any, beta: Fraction) -> Acc:
        x = self._ints(x_value, "its input")
        if len(x.shape) != 1 or w.ints.ndim != 2 or w.ints.shape[1] != x.shape[0]:
            raise Refused(f"input of shape {x.shape} does not fit weights (out, in) = "
                           f"{w.ints.shape} (flatten first)")
        params = dict(weight=w.ints, bits=self._bits(w, node))
        acc = self._layer(node, "linear", x, w, None, params, (w.ints.shape[0],))
        if bias is not None:
            acc = self._add_const(acc, self._bias_value(bias, acc.channels, beta))
        return acc

    def _layer(self, node: Any, kind: str, x: Ints, w: Weight, bias: Any,
               params: dict[str, Any], shape: tuple[int, ...]) -> Acc:
        s_w = _per_output_channel(w)
        r = tuple(x.scale * s for s in s_w)
        acc = Acc(kind=kind, node=where(node), inputs=(x.tensor,), params=params, r=r,
                  beta=(Fraction(0),) * len(r), shape=shape)
        if bias is not None:
            acc = self._add_const(acc, self._bias_value(bias, len(r), Fraction(1)))
        return acc

    def _bias_value(self, bias: Any, channels: int, beta: Fraction) -> list[Fraction]:
        if isinstance(bias, Weight):
            vals = [Fraction(int(i)) * s for i, s in
                    zip(bias.ints.ravel(), fractions(bias.scale), strict=True)]
        elif isinstance(bias, Const):
            vals = fractions(bias.value)
        else:
            raise Refused("the bias must be a constant")
        if len(vals) == 1:
            vals = vals * channels
        if len(vals) != channels:
            raise Refused(f"bias of {len(vals)} values for {channels} channels")
        return [v * beta for v in vals]

    def _bits(self, w: Weight, node: Any) -> int:
        """The INT width of the weights: their quantizer's, or their values' if narrower."""
        need = max(2, signed_bits_for(int(w.ints.min(initial=0)), int(w.ints.max(initial=0))))
        return max(2, w.bits) if w.bits <= 8 else need

    def _op_GlobalAveragePool(self, node: Any, ins: list, attrs: dict) -> Acc:
        x = self._ints(ins[0], "its input")
        if len(x.shape) != 3:
            raise Refused(f"needs a (C, H, W) input, not {x.shape}")
        c, h, w = x.shape
        return Acc(kind="global_avgpool2d", node=where(node), inputs=(x.tensor,), params={},
                   r=(x.scale / (h * w),) * c, beta=(Fraction(0),) * c, shape=(c, 1, 1))

    def _op_ReduceMean(self, node: Any, ins: list, attrs: dict, mean: bool = True) -> Acc:
        x = self._ints(ins[0], "its input")
        axes = attrs.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            if not isinstance(ins[1], Const):
                raise Refused("axes must be a constant")
            axes = ins[1].value.tolist()
        if len(x.shape) != 3 or sorted(a % 4 for a in (axes or [])) != [2, 3]:
            raise Refused(f"only a mean over H and W of a (C, H, W) tensor is imported (axes "
                           f"{axes}, input {x.shape})")
        acc = self._op_GlobalAveragePool(node, ins, attrs)
        if not mean:
            acc = self._times(acc, [Fraction(x.shape[1] * x.shape[2])] * acc.channels)
        if not attrs.get("keepdims", 1):
            acc = replace(acc, post=acc.post + (("flatten", {}),))
        return acc

    def _op_ReduceSum(self, node: Any, ins: list, attrs: dict) -> Acc:
        return self._op_ReduceMean(node, ins, attrs, mean=False)

    def _op_AveragePool(self, node: Any, ins: list, attrs: dict) -> Acc:
        x = self._ints(ins[0], "its input")
        kernel, stride, padding = self._window(attrs, x, "AveragePool")
        if any(padding) and not attrs.get("count_include_pad", 0):
            raise Refused("count_include_pad=0 with padding divides border windows by "
                           "fewer taps; hwq divides every window by KH*KW")
        c = x.shape[0]
        shape = (c, *(conv_output_size(n, k, s, p0, p1) for n, k, s, p0, p1 in
                      zip(x.shape[1:], kernel, stride, padding[::2], padding[1::2],
                          strict=True)))
        return Acc(kind="avgpool2d", node=where(node), inputs=(x.tensor,),
                   params=dict(kernel=kernel, stride=stride, padding=padding),
                   r=(x.scale / (kernel[0] * kernel[1]),) * c, beta=(Fraction(0),) * c,
                   shape=shape)

    def _window(self, attrs: dict, x: Ints, what: str) -> tuple[tuple, tuple, tuple]:
        if attrs.get("ceil_mode", 0):
            raise Refused("ceil_mode=1; hwq's pools round the output size down")
        if any(d != 1 for d in attrs.get("dilations", (1, 1))):
            raise Refused(f"dilated {what}")
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise Refused(f"auto_pad {attrs['auto_pad']} (give explicit pads)")
        if len(x.shape) != 3:
            raise Refused(f"needs a (C, H, W) input, not {x.shape}")
        kernel = tuple(attrs["kernel_shape"])
        stride = tuple(attrs.get("strides", (1, 1)))
        t, l, b, r = attrs.get("pads", (0, 0, 0, 0))
        return kernel, stride, (t, b, l, r)

    def _op_MaxPool(self, node: Any, ins: list, attrs: dict) -> Any:
        if len(node.output) > 1 and node.output[1]:
            raise Refused("the indices output is not supported")
        v = ins[0]
        if isinstance(v, Acc):
            x = Ints("", Fraction(1), 0, 0, v.shape)
        else:
            x = self._ints(v, "its input")
        kernel, stride, padding = self._window(attrs, x, "MaxPool")
        params = dict(kernel=kernel, stride=stride, padding=padding)
        probe = MaxPool2d(name="probe", inputs=("x",), **params)
        try:
            shape = probe.output_shape([x.shape])
        except ValueError as exc:
            raise Refused(str(exc).removeprefix("probe: ")) from None
        if isinstance(v, Acc):
            return replace(v, post=v.post + (("maxpool2d", params),), shape=shape)
        name = self._name(node.output[0])
        op = MaxPool2d(name=name, inputs=(x.tensor,), **params)
        self._push(op, x.lo, x.hi, where(node))
        return replace(x, tensor=name, shape=shape)

    def _op_Add(self, node: Any, ins: list, attrs: dict) -> Acc:
        a, b = ins[:2]
        if isinstance(a, Const) or isinstance(a, Weight):
            a, b = b, a
        if isinstance(a, Acc) and isinstance(b, Const | Weight):
            return self._add_const(a, self._channel_const(b, a, "added constant"))
        if isinstance(a, Acc) and isinstance(b, Acc):
            return self._merge(a, b)
        x, y = self._ints(a, "its first input"), self._ints(b, "its second input")
        if x.shape != y.shape:
            raise Refused(f"inputs of shapes {x.shape} and {y.shape} (hwq adds tensors of "
                           "one shape)")
        sa, sb = x.scale, y.scale
        w = add_weights(float(sa), float(sb), max_weight=ADD_WEIGHT_MAX, rel_tol=0.0)
        r = sa / w.wa if sa > sb else sb / w.wb
        notes = ()
        if sa / w.wa != sb / w.wb:
            notes = (f"input scales {float(sa):.6g} and {float(sb):.6g} in the ratio "
                     f"{w.wa}:{w.wb} (relative error {w.rel_error:.2g})",)
        c = x.shape[0]
        return Acc(kind="add", node=where(node), inputs=(x.tensor, y.tensor),
                   params=dict(weights=(w.wa, w.wb)), r=(r,) * c, beta=(Fraction(0),) * c,
                   shape=x.shape, notes=notes)

    def _merge(self, a: Acc, b: Acc) -> Acc:
        """Two convolutions (or linear layers) of one tensor with one geometry, summed: one
        layer. Per channel, ``r_a * (acc_a + beta_a) + r_b * (acc_b + beta_b)`` is
        ``r * (k_a*acc_a + k_b*acc_b + k_a*beta_a + k_b*beta_b)`` with ``r = min(r_a, r_b)``
        when ``k = r_x / r`` are integers (how the exporter splits a wide layer)."""
        same = (a.kind == b.kind and a.kind in ("conv2d", "linear") and a.inputs == b.inputs
                and not (a.post or b.post)
                and a.clip_lo is a.clip_hi is b.clip_lo is b.clip_hi is None
                and all(a.params[k] == b.params[k] for k in a.params
                        if k not in ("weight", "bits"))
                and a.params["weight"].shape == b.params["weight"].shape)
        r = [min(x, y) for x, y in zip(a.r, b.r, strict=True)]
        ka = [x / m for x, m in zip(a.r, r, strict=True)]
        kb = [y / m for y, m in zip(b.r, r, strict=True)]
        if not same or any(k.denominator != 1 for k in ka + kb):
            raise Refused(f"adds the unquantized outputs of {a.node} and {b.node}; hwq adds "
                           "two quantized tensors: quantize both inputs")
        shape = (-1,) + (1,) * (a.params["weight"].ndim - 1)
        fa = np.array([int(k) for k in ka], dtype=object).reshape(shape)
        fb = np.array([int(k) for k in kb], dtype=object).reshape(shape)
        w = a.params["weight"].astype(object) * fa + b.params["weight"].astype(object) * fb
        if np.abs(w).max(initial=0) >= 1 << 62:
            raise Refused(f"the summed weights of {a.node} and {b.node} overflow int64")
        w = w.astype(np.int64)
        bits = max(a.params["bits"], b.params["bits"],
                   signed_bits_for(int(w.min(initial=0)), int(w.max(initial=0))))
        beta = tuple(x * p + y * q for x, y, p, q in zip(a.beta, b.beta, ka, kb, strict=True))
        return replace(a, params=dict(a.params, weight=w, bits=bits), r=tuple(r), beta=beta,
                       notes=a.notes + b.notes)



def _per_output_channel(w: Weight) -> list[Fraction]:
    """The weight scale per output channel (axis 0); refused if it varies along others."""
    s = w.scale.reshape(w.scale.shape[0], -1)
    if (s != s[:, :1]).any():
        raise Refused(f"{w.node}: weight scales vary within an output channel; hwq's "
                       "requant is per output channel")
    return fractions(s[:, 0])
