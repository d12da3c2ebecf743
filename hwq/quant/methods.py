"""The registry of weight-quantization methods, by name.

Each entry points at a function with the signature of :mod:`hwq.quant.base`
(``quantize_<method>(model, data, *, bits, seed, progress, **options)``), given as
``"module:function"`` and imported only when the method is used, so a method whose module
is missing (not written yet, or an optional dependency absent) makes only that method
unavailable. Adding a method is one line in :data:`METHODS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["METHODS", "Method", "MethodUnavailable", "get_method", "method_names"]


class MethodUnavailable(ValueError):
    """A registered method whose implementation cannot be imported."""


@dataclass(frozen=True)
class Method:
    """A registered quantization method.

    Parameters
    ----------
    target : str
        ``"package.module:function"``, the function implementing the method.
    bits : (int, int)
        smallest and largest weight code width the method accepts.
    retrains : bool
        whether the method trains (and so takes ``epochs``/``lr`` options).
    summary : str
        one line for ``--help`` and reports.
    """

    target: str
    bits: tuple[int, int]
    retrains: bool
    summary: str
    #: ``bits`` is an average that may be fractional (tq: average bits per weight)
    fractional: bool = False
    #: ``bits`` may be omitted (joint: the size budget decides the widths)
    bits_optional: bool = False
    #: the weight format of the network it gives (``"int"``, ``"pot"``, ``"codebook"``)
    weights: str = "int"

    def load(self) -> Callable[..., dict]:
        """Import and return the implementing function."""
        module_name, _, func_name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # not written yet, or a missing dependency
            raise MethodUnavailable(f"is not available in this hwq (module "
                                    f"{exc.name or module_name} is missing)") from None
        func = getattr(module, func_name, None)
        if func is None:
            raise MethodUnavailable(f"is not available in this hwq ({module_name} has no "
                                    f"{func_name})")
        return func

    def check_bits(self, name: str, bits: object) -> int | float | None:
        """``bits`` if the method takes it, else ``ValueError`` naming the range.

        Integer methods take an ``int`` (or an integral float such as ``4.0``); a
        ``fractional`` method takes any number in ``lo..hi``.
        """
        lo, hi = self.bits
        if bits is None and self.bits_optional:
            return None
        allowed = f"{lo}" if lo == hi else f"{lo}..{hi}"
        if self.fractional:
            ok = (not isinstance(bits, bool) and isinstance(bits, int | float)
                  and lo <= bits <= hi)
            if not ok:
                raise ValueError(f"Method {name!r} takes --bits in {allowed} (average bits "
                                 f"per weight), not {bits!r}")
            return float(bits)
        if isinstance(bits, float) and bits.is_integer():
            bits = int(bits)
        if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
            raise ValueError(f"Method {name!r} takes --bits {allowed}, not {bits!r}")
        return bits


#: name -> method. INQ gives POT(b) weights; SLQ/MLQ CODEBOOK weights (MLQ is ternary: 2 bits);
#: TQ mixed-precision INT layers behind INT8 bases; joint sparse CODEBOOK layers.
METHODS: dict[str, Method] = {
    "uniform": Method("hwq.quant.uniform:quantize_uniform", (2, 8), False,
                      "per-channel symmetric INT(b), post-training rounding"),
    "uniform-qat": Method("hwq.quant.uniform:quantize_uniform_qat", (2, 8), True,
                          "per-channel symmetric INT(b), quantization-aware training (STE)"),
    "inq": Method("hwq.quant.inq:quantize_inq", (2, 7), True,
                  "incremental network quantization to powers of two (Zhou et al. 2017)",
                  weights="pot"),
    "slq": Method("hwq.quant.slq:quantize_slq", (2, 8), True,
                  "single-level k-means weight sharing, loss-based partition (Xu et al. 2018)",
                  weights="codebook"),
    "mlq": Method("hwq.quant.slq:quantize_mlq", (2, 2), True,
                  "multi-level (ternary) quantization, layer by layer (Xu et al. 2018)",
                  weights="codebook"),
    "tq": Method("hwq.quant.tq:quantize_tq", (1, 8), True,
                 "transform quantization: ELT/KLT basis, rate-distortion bit allocation "
                 "(Young et al. 2021)", fractional=True),
    "joint": Method("hwq.quant.joint:quantize_joint", (1, 7), True,
                    "joint sparsity-quantization by ADMM under a size budget "
                    "(Yang et al. 2020)", bits_optional=True, weights="codebook"),
}


def method_names() -> list[str]:
    """Every registered method name, available or not."""
    return list(METHODS)


def get_method(name: str) -> Method:
    """The registered method called ``name``, or ``ValueError`` listing the allowed names."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"Unknown quantization method {name!r}; allowed: "
                         f"{', '.join(METHODS)}")
    return METHODS[name]
