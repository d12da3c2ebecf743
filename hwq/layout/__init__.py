"""hwq.layout: memory layout of weights and parameters; the network -> Program compiler."""
