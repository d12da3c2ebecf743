"""The stages of one point: quantize, compile, report (and a simulation check), each cached.

Each stage is a plain function of JSON-able arguments returning a JSON-able dict, so it runs
the same in this process or as a Ray task on another machine. Its result is stored under
``<cache>/explore/<stage>/<key>.json`` (and the quantized network beside it), where ``key`` is
a SHA-256 over the stage's inputs, hwq's version and the source of the modules the stage runs
(:data:`STAGE_SOURCES`, so that a development checkout whose compiler or RTL changed does not
return stale rows): the same inputs are never computed twice, and an interrupted sweep resumes
from what was stored. A stage that fails returns
``{"error": "..."}`` (also stored, so a broken point is not retried on every run; ``--retry``
clears those), and the stages after it pass the error on.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

from hwq import __version__

__all__ = ["StageCache", "compile_stage", "quantize_stage", "report_stage", "sim_stage"]

#: Bump when a stage's result format changes: older entries are then recomputed.
FORMAT = 2

#: The modules (packages or single modules) whose source decides each stage's result. A
#: stage's key includes a digest of their ``.py`` files; the stages chain by key (compile's
#: inputs hold the quantize key, and so on), so a change upstream reaches every later stage.
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "quantize": ("hwq.quant", "hwq.workloads", "hwq.golden", "hwq.ir", "hwq.serialize",
                 "hwq.config"),
    "compile": ("hwq.layout", "hwq.golden", "hwq.ir", "hwq.config", "hwq.hardware"),
    "report": ("hwq.rtl", "hwq.layout", "hwq.golden", "hwq.config", "hwq.hardware"),
    "sim": ("hwq.sim", "hwq.rtl", "hwq.layout", "hwq.golden", "hwq.host", "hwq.config",
            "hwq.hardware"),
}


def _module_files(name: str) -> list[tuple[str, Path]]:
    """``(label, path)`` of the ``.py`` files of module or package ``name`` (a package: all of
    them, recursively), labelled by module and relative path so that two checkouts of the same
    code (a cluster's machines) agree."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ValueError(f"Stage source {name!r} is not an importable module")
    if spec.submodule_search_locations:
        return sorted((f"{name}/{p.relative_to(d).as_posix()}", p)
                      for d in spec.submodule_search_locations for p in Path(d).rglob("*.py"))
    return [(name, Path(spec.origin))] if spec.origin else []


def files_digest(files: list[tuple[str, Path]]) -> str:
    """SHA-256 (hex, 24 digits) over the labels and contents of ``files``, in order."""
    h = hashlib.sha256()
    for label, path in files:
        h.update(label.encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:24]


@functools.cache
def source_digest(stage: str) -> str:
    """Digest of the source of ``stage``'s modules (:data:`STAGE_SOURCES`), once per process."""
    if stage not in STAGE_SOURCES:
        raise ValueError(f"Unknown stage {stage!r}; allowed: {', '.join(STAGE_SOURCES)}")
    files = [p for name in STAGE_SOURCES[stage] for p in _module_files(name)]
    return files_digest(files)


class StageCache:
    """Results of the stages on disk, keyed by content."""

    def __init__(self, root: str | Path | None = None) -> None:
        from hwq.sim.build import cache_root

        self.root = Path(root) if root is not None else Path(cache_root(None)) / "explore"

    @staticmethod
    def key(stage: str, inputs: dict[str, Any]) -> str:
        blob = json.dumps({"stage": stage, "inputs": inputs, "hwq": __version__,
                           "source": source_digest(stage), "format": FORMAT}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def path(self, stage: str, key: str, suffix: str = ".json") -> Path:
        return self.root / stage / f"{key}{suffix}"

    def get(self, stage: str, key: str, *, errors: bool = True) -> dict[str, Any] | None:
        """The stored result, or None (also for a stored error with ``errors=False``)."""
        path = self.path(stage, key)
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):  # absent, or half-written by a killed run
            return None
        if not isinstance(result, dict) or result.get("key") != key:
            return None
        if "error" in result and not errors:
            return None
        return result

    def put(self, stage: str, key: str, result: dict[str, Any]) -> dict[str, Any]:
        from hwq.serialize import atomic_write

        result = {**result, "key": key}
        atomic_write(self.path(stage, key), (json.dumps(result, indent=1) + "\n").encode())
        return result


def _guard(stage: str, cache: StageCache, key: str, fn) -> dict[str, Any]:
    """Run ``fn()`` once per key: its result, or ``{"error": ...}``, stored either way."""
    cached = cache.get(stage, key)
    if cached is not None:
        return {**cached, "cached": True}
    t0 = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # a failing point is a row with its error, never a lost sweep
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result = {"error": f"{stage}: {type(exc).__name__}: {exc}",
                  "where": f"{Path(last.filename).name}:{last.lineno}"}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return {**cache.put(stage, key, result), "cached": False}


def quantize_key(model: str, method: str, bits: int, seed: int) -> dict[str, Any]:
    return {"model": model, "method": method, "bits": bits, "seed": seed}


def quantize_stage(inputs: dict[str, Any], cache_root: str | None = None,
                   threads: int = 1) -> dict[str, Any]:
    """Quantize the workload's model: accuracy (integer network, golden), size, the network."""
    cache = StageCache(cache_root)
    key = cache.key("quantize", inputs)

    def work() -> dict[str, Any]:
        import torch

        from hwq import serialize
        from hwq.quant.api import quantize
        from hwq.workloads import get_workload

        torch.set_num_threads(threads)
        workload = get_workload(inputs["model"])
        data = workload.load_data()
        model = workload.pretrained(progress=False)
        res = quantize(model, inputs["method"], bits=inputs["bits"], data=data,
                       seed=inputs["seed"], progress=False,
                       **workload.method_options.get(inputs["method"], {}))
        path = cache.path("quantize", key, ".safetensors")
        serialize.save(res.network, path)
        return {"model": inputs["model"], "accuracy": res.accuracy,
                "fp32_accuracy": res.fp32_accuracy,
                "weight_bits_total": int(res.weight_bits_total),
                "compression_ratio": float(res.compression_ratio),
                "output_mismatches": int(res.output_mismatches),
                "network_file": str(path)}

    return _guard("quantize", cache, key, work)


def compile_stage(quantized: dict[str, Any], core: dict[str, Any],
                  cache_root: str | None = None) -> dict[str, Any]:
    """Compile the network for ``core`` (pe, lanes, simd; :func:`hwq.explore.space.core_inputs`):
    its fitted config and cycles. With ``weights="external"`` the weights stream from external
    memory over an ``ext_bits`` port and the cycles include the waits for loads on a memory of
    fixed latency ``mem_latency`` (:func:`hwq.golden.memory.schedule`)."""
    if "error" in quantized:
        return {"error": quantized["error"], "cached": quantized.get("cached", False)}
    cache = StageCache(cache_root)
    key = cache.key("compile", {"network": quantized["key"], **core})

    def work() -> dict[str, Any]:
        from hwq import serialize
        from hwq.layout.compiler import compile as compile_network
        from hwq.layout.compiler import core_config, network_cycles

        network = serialize.load(quantized["network_file"])
        weights = core.get("weights", "onchip")
        extra = {"ext_bits": core["ext_bits"]} if weights == "external" else {}
        config = core_config(network, pe=core["pe"], lanes=core["lanes"], simd=core["simd"],
                             weights=weights, **extra)
        program = compile_network(network, config, weights=weights)
        layers = network_cycles(network, config)
        macs = sum(layer.get("macs", 0) for layer in layers)
        plane_ops = sum(layer.get("bit_ops", 0) for layer in layers)
        useful = plane_ops if config.pe == "bit_serial" else macs  # as hwq flow counts
        cycles = int(program.cycles())
        result = {"config": config.to_dict(), "cycles": cycles, "macs": int(macs),
                  "utilization": useful / (cycles * config.lanes * config.simd),
                  "act_peak_words": int(program.meta["act_peak"])}
        if weights == "external":
            from hwq.golden.cycles import OVERHEADS
            from hwq.golden.memory import schedule

            compute = cycles
            cycles = int(sum(schedule(program.layers, beats=program.words.ext_beats,
                                      burst=config.ext_burst,
                                      outstanding=config.ext_outstanding,
                                      latency=core["mem_latency"],
                                      act_beats=program.words.ext_act_beats))) + OVERHEADS.run
            result.update(cycles=cycles, compute_cycles=compute,
                          utilization=useful / (cycles * config.lanes * config.simd),
                          weights="external", external_bytes=int(program.external_bytes),
                          mem_latency=core["mem_latency"])
        return result

    return _guard("compile", cache, key, work)


def report_key(config: dict[str, Any], target: str, device: str | None) -> dict[str, Any]:
    return {"config": config, "target": target, "device": device}


def report_stage(inputs: dict[str, Any], cache_root: str | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
    """Yosys + nextpnr on the core (:func:`hwq.rtl.report.report`): resources and routed Fmax."""
    cache = StageCache(cache_root)
    key = cache.key("report", inputs)

    def work() -> dict[str, Any]:
        from hwq.config import CoreConfig
        from hwq.rtl.report import report

        r = report(CoreConfig.from_dict(inputs["config"]), target=inputs["target"],
                   device=inputs["device"], progress=None, timeout=timeout)
        if not r.get("ok"):
            return {"error": f"report: {r.get('error', 'does not fit')}",
                    "resources": r.get("resources")}
        return {"device": r["device"], "fmax_mhz": r["fmax_mhz"], "resources": r["resources"],
                "tool_seconds": r.get("seconds")}

    return _guard("report", cache, key, work)


def sim_stage(quantized: dict[str, Any], compiled: dict[str, Any], images: int,
              cache_root: str | None = None) -> dict[str, Any]:
    """Run ``images`` test images on the Verilated core: outputs vs golden, cycles vs model."""
    if "error" in quantized or "error" in compiled:
        return {"error": quantized.get("error") or compiled.get("error")}
    cache = StageCache(cache_root)
    key = cache.key("sim", {"compile": compiled["key"], "images": images})

    def work() -> dict[str, Any]:
        from hwq import golden, serialize
        from hwq.config import CoreConfig
        from hwq.golden.memory import MemoryTiming
        from hwq.layout.compiler import compile as compile_network
        from hwq.sim.simulate import simulate
        from hwq.workloads import get_workload

        network = serialize.load(quantized["network_file"])
        program = compile_network(network, CoreConfig.from_dict(compiled["config"]),
                                  weights=compiled.get("weights", "onchip"))
        data = get_workload(quantized["model"]).load_data()
        x = golden.quantize_input(data.x_test[:images].numpy(), network.input_scale,
                                  network.act_bits)
        memory = (MemoryTiming(latency=compiled["mem_latency"]) if "mem_latency" in compiled
                  else None)
        sim = simulate(program, None, x, jobs=1, progress=False, memory=memory)
        mismatches = int((sim.outputs != golden.run(network, x)).sum())
        return {"images": images, "mismatches": mismatches,
                "cycle_model_mismatches": sim.cycle_model_mismatches(),
                "cycles": float(sim.cycles.mean())}

    return _guard("sim", cache, key, work)


def default_threads() -> int:
    """Torch threads per quantize task: the machine's cores over the tasks that run at once."""
    return max(1, (os.cpu_count() or 1) // 2)
