"""hwq.layout: memory layout of weights and parameters; the network -> Program compiler.

``compile(network, config) -> Program`` packs a :class:`~hwq.ir.QuantizedNetwork` into the
memory images of one core; ``execute(program, x)`` runs a Program in NumPy from its packed
images (it equals ``hwq.golden.run``); ``core_config(network, pe=, lanes=, simd=)`` is the
narrowest core that runs a network; :mod:`hwq.layout.regmap` is the core's register map.
Pure Python and NumPy: the host runtime imports this package.
"""

from hwq.layout.compiler import compile, core_config
from hwq.layout.executor import execute
from hwq.layout.program import Program, Tensor
from hwq.layout.words import CoreWords, Field, WordLayout, core_words

__all__ = ["CoreWords", "Field", "Program", "Tensor", "WordLayout", "compile", "core_config",
           "core_words", "execute"]
