"""hwq.golden: the arithmetic spec and golden model."""
