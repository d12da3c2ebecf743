"""hwq: quantized CNN inference from PyTorch to verified accelerator RTL, with open tools only.

Parts (one import namespace, four folders): ``hwq`` (quantization front end, integer IR,
the arithmetic spec ``hwq.golden``, memory layout), ``hwq.rtl`` (Amaranth generators),
``hwq.sim`` (Verilator + cocotb), ``hwq.host`` (runtime).
"""

__version__ = "0.1.0"
