"""Stand-ins shared by the quantization tests."""

from __future__ import annotations


class StubFit:
    """Replaces ``hwq.workloads.digits.fit``: records the hyperparameters, trains nothing."""

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, model, x, y, **kwargs):
        self.calls.append(kwargs)
        return []
