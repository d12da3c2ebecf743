"""``hwq bench all``: every benchmark at a size that fits about 15 minutes on 2 cores."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwq import __version__
from hwq.bench import DEFAULT_OUT
from hwq.bench.golden import bench_golden, format_golden
from hwq.serialize import atomic_write


def _golden_section(*, full: bool, out_dir: Path, **_: Any) -> tuple[dict, str]:
    r = bench_golden(repeats=15)
    return r, format_golden(r)


def _sim_section(*, full: bool, out_dir: Path, **_: Any) -> tuple[dict, str]:
    from hwq.bench.sim import bench_sim, format_sim

    r = bench_sim(images=540, large_images=100 if full else 20, repeats=3 if full else 1)
    return r, format_sim(r)


def _quant_section(*, full: bool, out_dir: Path, **_: Any) -> tuple[dict, str]:
    from hwq.bench.quant import bench_quant, format_quant

    r = bench_quant(bits=(2, 3, 4, 5) if full else (2, 4), seeds=(0, 1, 2),
                    out=out_dir / "quant.json", progress=True)
    return r, format_quant(r)


def _tq_section(*, full: bool, out_dir: Path, seeds: tuple[int, ...] | None = None,
                bits: tuple[float, ...] | None = None,
                model_seeds: tuple[int, ...] | None = None,
                retrain_epochs: tuple[int, ...] = (0, 3), workload: str = "digits",
                resume: bool = False, jobs: int = 1, **_: Any) -> tuple[dict, str]:
    from hwq.bench.tq import bench_tq, format_tq

    if seeds is None and model_seeds is None:
        seeds = (0, 1, 2) if full else (0,)
    r = bench_tq(bits=bits or ((2.0, 3.0) if full else (2.0,)), seeds=seeds,
                 model_seeds=model_seeds, retrain_epochs=retrain_epochs, out_dir=out_dir,
                 workload=workload, resume=resume, jobs=jobs, progress=True)
    return r, format_tq(r)


def _joint_section(*, full: bool, out_dir: Path, seeds: tuple[int, ...] | None = None,
                   compressions: tuple[float, ...] | None = None, workload: str = "digits",
                   **_: Any) -> tuple[dict, str]:
    from hwq.bench.joint import bench_joint, format_joint

    r = bench_joint(compressions=compressions or (None if full else (25, 50)),
                    seeds=seeds or ((0, 1, 2) if full else (0,)), out_dir=out_dir,
                    progress=True, workload=workload)
    return r, format_joint(r)


def _hw_section(*, full: bool, out_dir: Path, jobs: int | None = None,
                timeout: float | None = None, cores: bool = True,
                **_: Any) -> tuple[dict, str]:
    from hwq.bench.hw import bench_hw, format_table

    r = bench_hw(quick=not full, out=out_dir, jobs=jobs, timeout=timeout, cores=cores)
    return r, format_table(r["rows"])


def _util_section(*, full: bool, out_dir: Path, **_: Any) -> tuple[dict, str]:
    from hwq.bench.util import bench_util, format_util

    r = bench_util(hw_json=out_dir / "hw.json")
    return r, format_util(r)


#: name -> runner(full=, out_dir=) -> (result, text); the order of ``hwq bench all``.
SECTIONS: dict[str, Callable[..., tuple[dict, str]]] = {
    "golden": _golden_section, "sim": _sim_section, "quant": _quant_section,
    "tq": _tq_section, "joint": _joint_section, "hw": _hw_section, "util": _util_section,
}


def bench_all(*, full: bool = False, skip: list[str] | tuple[str, ...] = (),
              out_dir: Path = DEFAULT_OUT, hw_timeout: float | None = None,
              hw_cores: bool = False) -> dict[str, Any]:
    """Every benchmark; returns ``{section: result}`` and writes ``summary.md``.

    A section that fails is recorded with its error and the others still run;
    ``hw_timeout`` bounds each tool run of the hw section (a point over it is a row with
    its error). The hw section has the 8x8 arrays; ``hw_cores`` (or ``full``) adds the
    three 8x8 cores, whose place and route alone takes ~12 minutes on 2 cores cold.
    """
    unknown = sorted(set(skip) - set(SECTIONS))
    if unknown:
        raise ValueError(f"Unknown benchmark(s) {unknown}; allowed: {', '.join(SECTIONS)}")
    results: dict[str, Any] = {"bench": "all", "full": full, "hwq_version": __version__,
                               "sections": {}}
    texts = [f"# hwq benchmarks ({'full' if full else 'standard'} size)", ""]
    t_start = time.perf_counter()
    for name, runner in SECTIONS.items():
        if name in skip:
            continue
        print(f"[bench] {name} ...", file=sys.stderr)
        t0 = time.perf_counter()
        try:
            extra = ({"timeout": hw_timeout, "cores": hw_cores or full} if name == "hw"
                     else {})
            result, text = runner(full=full, out_dir=out_dir, **extra)
        except Exception as exc:  # one broken section must not lose the others' figures
            result, text = {"error": f"{type(exc).__name__}: {exc}"}, f"FAILED: {exc}"
        result["seconds"] = time.perf_counter() - t0
        results["sections"][name] = result
        texts += [f"## {name} ({result['seconds']:.0f} s)", "", "```", text, "```", ""]
    results["seconds"] = time.perf_counter() - t_start
    texts.append(f"total {results['seconds']:.0f} s")
    summary = "\n".join(texts) + "\n"
    atomic_write(out_dir / "summary.md", summary.encode())
    results["_text"] = summary
    return results
