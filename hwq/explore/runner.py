"""Run a sweep's stages on Ray: each stage of each point a task, shared stages run once.

The driver first reads every stage it can from the content cache (:mod:`hwq.explore.stages`);
only what is missing becomes Ray tasks, so a sweep whose results are all stored starts no Ray
at all and returns in seconds. Tasks are deduplicated by content: one quantization serves every
core that runs it, one place-and-route every point whose core is the same. A local Ray starts
with the machine's cores unless ``address`` names a running cluster (``ray start --head``).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from hwq.explore.space import Point, core_inputs
from hwq.explore.stages import (
    StageCache,
    compile_stage,
    quantize_key,
    quantize_stage,
    report_key,
    report_stage,
    sim_stage,
)

__all__ = ["run_sweep"]


def _check_reachable(address: str) -> None:
    """Refuse, in seconds, an address where no Ray head listens (ray.init would retry for
    minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--address must be host:port of a Ray head (ray start --head), not "
                         f"{address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ValueError(f"No Ray cluster answers at {address} ({exc.strerror or exc}); start "
                         "one with ray start --head --port PORT") from None


class _Scheduler:
    """Runs stage functions from the cache, or as Ray tasks started on first need."""

    def __init__(self, cache: StageCache, address: str | None, retry: bool,
                 say: Callable[[str], None]) -> None:
        self.cache, self.address, self.retry, self.say = cache, address, retry, say
        self.ray: Any = None
        self.remote: dict[str, Any] = {}
        self.pending: dict[Any, tuple[str, str]] = {}   # ObjectRef -> (stage, key)
        self.done: dict[tuple[str, str], dict[str, Any]] = {}
        self.waiting: dict[tuple[str, str], list[Callable[[dict], None]]] = {}
        self.tasks = 0

    def _start_ray(self) -> None:
        import ray

        if not ray.is_initialized():
            if self.address:
                _check_reachable(self.address)
                self.say(f"[explore] joining the Ray cluster at {self.address}")
                ray.init(address=self.address, log_to_driver=False, logging_level="ERROR")
            else:
                cores = os.cpu_count() or 1
                self.say(f"[explore] starting a local Ray on {cores} cores")
                # address="local": a Ray of its own, even where `ray start` left a cluster
                # running (which a bare ray.init() would join, refusing num_cpus)
                ray.init(address="local", num_cpus=cores, include_dashboard=False,
                         log_to_driver=False,
                         logging_level="ERROR")
        self.ray = ray
        for name, fn in (("quantize", quantize_stage), ("compile", compile_stage),
                         ("report", report_stage), ("sim", sim_stage)):
            self.remote[name] = ray.remote(num_cpus=1, max_retries=0)(fn)

    def need(self, stage: str, key: str, args: tuple, then: Callable[[dict], None]) -> None:
        """Call ``then(result)`` once the stage's result for ``key`` is known."""
        slot = (stage, key)
        if slot in self.done:
            then(self.done[slot])
            return
        if slot in self.waiting:       # already running for another point
            self.waiting[slot].append(then)
            return
        cached = self.cache.get(stage, key, errors=not self.retry)
        if cached is not None:
            self.done[slot] = {**cached, "cached": True}
            then(self.done[slot])
            return
        if self.ray is None:
            self._start_ray()
        self.waiting[slot] = [then]
        self.pending[self.remote[stage].remote(*args, cache_root=str(self.cache.root))] = slot
        self.tasks += 1

    def run(self, on_progress: Callable[[], None]) -> None:
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1)
            slot = self.pending.pop(ready[0])
            try:
                result = self.ray.get(ready[0])
            except Exception as exc:  # a worker that died: the row says so
                result = {"error": f"{slot[0]}: {type(exc).__name__}: {exc}"}
            self.done[slot] = result
            for then in self.waiting.pop(slot):
                then(result)
            on_progress()


def _row(point: Point, q: dict | None, c: dict | None, r: dict | None,
         s: dict | None) -> dict[str, Any]:
    row: dict[str, Any] = {**point.to_dict(), "label": point.label}
    error = next((x["error"] for x in (q, c, r, s) if x and "error" in x), None)
    if q and "error" not in q:
        row.update(accuracy=q["accuracy"], fp32_accuracy=q["fp32_accuracy"],
                   weight_bits=q["weight_bits_total"], compression=q["compression_ratio"])
    if c and "error" not in c:
        row.update(cycles=c["cycles"], utilization=c["utilization"], core=c["config"],
                   act_peak_words=c["act_peak_words"])
        if "compute_cycles" in c:
            row.update(compute_cycles=c["compute_cycles"], external_bytes=c["external_bytes"],
                       mem_latency=c["mem_latency"])
    if r and "error" not in r:
        res = r["resources"]
        row.update(device=r["device"], fmax_mhz=r["fmax_mhz"], lut4=res["lut4"],
                   lut4_eq=res["lut4_eq"], ff=res["ff"], carry=res["carry"], dsp=res["dsp"],
                   bram=res["bram"])
        if c and "error" not in c and r["fmax_mhz"]:
            ips = r["fmax_mhz"] * 1e6 / c["cycles"]
            row.update(inferences_per_s=ips, inferences_per_s_per_klut=ips / (res["lut4_eq"]
                                                                              / 1000))
    if s is not None:
        row["sim_check"] = ({"error": s["error"]} if "error" in s else
                            {k: s[k] for k in ("images", "mismatches",
                                               "cycle_model_mismatches")})
        if "error" not in s and (s["mismatches"] or s["cycle_model_mismatches"]):
            error = error or (f"simulation check: {s['mismatches']} outputs differ, cycle "
                              f"model off in {s['cycle_model_mismatches']}")
    row["cached"] = all(x.get("cached", False) for x in (q, c, r, s) if x is not None)
    row["error"] = error
    return row


def run_sweep(points: list[Point], *, target: str = "ecp5", device: str | None = None,
              report: bool = True, sim_check: int = 0, sim_images: int = 8,
              address: str | None = None, cache_root: str | None = None, retry: bool = False,
              progress: bool = True, ext_bits: int = 64, mem_latency: int = 4
              ) -> dict[str, Any]:
    """Every point's row (in ``points`` order) and how the sweep ran.

    ``sim_check`` points (a seeded sample) also run ``sim_images`` test images on the
    Verilated core; a difference from golden or the cycle model is the row's error. Points
    with external weights get an ``ext_bits`` port and their cycles are modelled (and
    simulated) on a memory of fixed latency ``mem_latency``.
    """
    cores = [core_inputs(p, ext_bits=ext_bits, mem_latency=mem_latency) for p in points]
    say = (lambda text: print(text, file=sys.stderr)) if progress else (lambda text: None)
    cache = StageCache(cache_root)
    sched = _Scheduler(cache, address, retry, say)
    checked = set(random.Random(0).sample(range(len(points)), min(sim_check, len(points))))
    parts: dict[int, dict[str, Any]] = {i: {} for i in range(len(points))}
    finished: set[int] = set()
    t0 = time.perf_counter()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(points), desc="explore", unit="point", file=sys.stderr)

    def finish(i: int) -> None:
        if i not in finished:
            finished.add(i)
            if bar is not None:
                bar.update(1)

    def maybe_finish(i: int) -> None:
        p = parts[i]
        if "error" in p.get("q", {}) or "error" in p.get("c", {}):
            finish(i)
        elif "c" in p and (not report or "r" in p) and (i not in checked or "s" in p):
            finish(i)

    def on_quantize(i: int, q: dict) -> None:
        parts[i]["q"] = q
        core = cores[i]
        if "error" in q:
            maybe_finish(i)
            return
        ckey = cache.key("compile", {"network": q["key"], **core})
        sched.need("compile", ckey, (q, core), lambda c, i=i: on_compile(i, c))

    def on_compile(i: int, c: dict) -> None:
        parts[i]["c"] = c
        if "error" not in c:
            if report:
                inputs = report_key(c["config"], target, device)
                sched.need("report", cache.key("report", inputs), (inputs,),
                           lambda r, i=i: on_report(i, r))
            if i in checked:
                q = parts[i]["q"]
                skey = cache.key("sim", {"compile": c["key"], "images": sim_images})
                sched.need("sim", skey, (q, c, sim_images), lambda s, i=i: on_sim(i, s))
        maybe_finish(i)

    def on_report(i: int, r: dict) -> None:
        parts[i]["r"] = r
        maybe_finish(i)

    def on_sim(i: int, s: dict) -> None:
        parts[i]["s"] = s
        maybe_finish(i)

    for i, point in enumerate(points):
        inputs = quantize_key(point.model, point.method, point.bits, point.seed)
        sched.need("quantize", cache.key("quantize", inputs), (inputs,),
                   lambda q, i=i: on_quantize(i, q))
    if sched.pending:
        sched.run(lambda: None)
    if bar is not None:
        bar.close()
    rows = [_row(points[i], parts[i].get("q"), parts[i].get("c"), parts[i].get("r"),
                 parts[i].get("s")) for i in range(len(points))]
    return {"rows": rows, "ray_tasks": sched.tasks, "ray_started": sched.ray is not None,
            "address": address, "seconds": time.perf_counter() - t0,
            "cache_dir": str(cache.root)}
