"""``hwq bench golden``: the golden model's int8 conv against PyTorch's float32 conv.

Timings are ratios measured side by side in one run (the machine is shared and noisy):
each candidate is timed interleaved with its reference, and the median of the repeats is
reported.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hwq import __version__


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, round-robin, after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def bench_golden(*, repeats: int = 15, batch: int = 8, channels: int = 64,
                 size: int = 32) -> dict[str, Any]:
    """Golden int8 conv2d 3x3 (pad 1) vs torch float32 conv2d on the same shapes."""
    import torch

    from hwq import golden
    from hwq.golden.gemm import matmul_dtype

    for name, v in (("repeats", repeats), ("batch", batch), ("channels", channels),
                    ("size", size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"Benchmark {name} must be a positive integer, not {v!r}")
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(batch, channels, size, size), dtype=np.int64)
    w = rng.integers(-128, 128, size=(channels, channels, 3, 3), dtype=np.int64)
    bias = rng.integers(-1000, 1000, size=channels)
    m = golden.multiplier_from_scale(np.full(channels, 1 / 3000))
    xt = torch.from_numpy(x.astype(np.float32))
    wt = torch.from_numpy(w.astype(np.float32))
    # correctness first: the benchmarked call is exact
    acc = golden.conv2d(x, w, padding=1)
    ref = torch.nn.functional.conv2d(xt.double(), wt.double(), padding=1).numpy()
    np.testing.assert_array_equal(acc, ref.astype(np.int64))

    times = _interleaved(
        {
            "golden_conv": lambda: golden.conv2d(x, w, padding=1),
            "golden_conv_requant": lambda: golden.requantize(
                golden.conv2d(x, w, padding=1), bias, m.M, m.S, lo=-128, hi=127),
            "torch_float32_conv": lambda: torch.nn.functional.conv2d(xt, wt, padding=1),
        },
        repeats,
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "bench": "golden",
        "what": f"int8 conv2d 3x3 pad 1, {channels}->{channels} channels, {size}x{size}, "
                f"batch {batch}",
        "reference": "torch.nn.functional.conv2d, float32, same shapes, same process",
        "gemm_dtype": str(matmul_dtype(channels * 9, 128, 128)),
        "median_s": med,
        "ratio_golden_vs_torch": med["golden_conv"] / med["torch_float32_conv"],
        "ratio_golden_requant_vs_torch": med["golden_conv_requant"] / med["torch_float32_conv"],
        "goal_ratio": 3.0,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "hwq_version": __version__,
    }


def format_golden(r: dict[str, Any]) -> str:
    med = r["median_s"]
    return "\n".join([
        f"golden benchmark: {r['what']}",
        f"  golden conv (exact, {r['gemm_dtype']} GEMM) {med['golden_conv'] * 1e3:8.2f} ms",
        f"  golden conv + requant          {med['golden_conv_requant'] * 1e3:8.2f} ms",
        f"  torch float32 conv             {med['torch_float32_conv'] * 1e3:8.2f} ms",
        f"  ratio golden / torch: {r['ratio_golden_vs_torch']:.2f}x "
        f"(with requant {r['ratio_golden_requant_vs_torch']:.2f}x; goal <= {r['goal_ratio']}x), "
        f"median of {r['repeats']}",
    ])
