"""hwq.quant: quantization methods (uniform, INQ, SLQ/MLQ, TQ, joint) producing the integer IR."""
