"""The proof set, and running proofs through SymbiYosys in parallel.

:data:`PROOFS` lists every proof (``slow`` ones at larger widths). :func:`run_proof` runs one
(harness -> SBY -> on failure: the counterexample's inputs, its VCD and its replay against
:mod:`hwq.golden`); :func:`run_proofs` runs several over a process pool.
"""

from __future__ import annotations

import os
import shutil
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hwq.formal.blocks import Proof
from hwq.rtl.pe import DOT_STAGES

__all__ = ["PROOFS", "run_proof", "run_proofs", "select"]

_PE = DOT_STAGES + 2


def _pe(variant: str, slow: bool = False, engine: str = "smtbmc z3", **widths: int) -> Proof:
    # k-induction over a feed-forward pipeline: z3 is the faster solver here, boolector with
    # the DSP block's 18x18 multipliers
    return Proof("pe", variant, widths, "prove", _PE, slow=slow, engine=engine)


#: Every proof: the default set (small widths) and the ``slow`` ones.
PROOFS: tuple[Proof, ...] = (
    _pe("shift_add/pot", simd=2, act=3, w=3),
    _pe("bit_serial/int", simd=2, act=4),
    _pe("multiply/int", simd=2, act=3, w=3),
    _pe("multiply/codebook", simd=2, act=3, w=2, table=3),
    _pe("pair/int", engine="smtbmc boolector", simd=2, act=3, w=3),
    _pe("shift_add/pot", slow=True, simd=4, act=3, w=3),
    _pe("bit_serial/int", slow=True, simd=4, act=6),
    _pe("multiply/int", slow=True, simd=4, act=4, w=4),
    _pe("multiply/codebook", slow=True, simd=4, act=4, w=3, table=4),
    Proof("requant", "arith", {"lanes": 1, "act": 4, "acc": 8, "bias": 6, "m": 3}, "prove",
          13),
    Proof("requant", "arith", {"lanes": 1, "act": 4, "acc": 8, "bias": 8, "m": 4}, "prove",
          13, slow=True),
    Proof("mac_array", "shift_add/pot", {"lanes": 1, "simd": 1, "act": 2, "w": 2}, "prove",
          12),
    Proof("mac_array", "bit_serial/int", {"lanes": 1, "simd": 1, "act": 2, "shift": 1},
          "prove", 12),
    Proof("mac_array", "bit_serial/int", {"lanes": 1, "simd": 1, "act": 2, "shift": 7},
          "prove", 12, slow=True),
    Proof("mac_array", "multiply/int", {"lanes": 1, "simd": 1, "act": 2, "w": 2}, "prove", 12),
    Proof("mac_array", "multiply/codebook",
          {"lanes": 1, "simd": 1, "act": 2, "w": 2, "table": 2}, "prove", 12),
    Proof("requant", "stream", {"lanes": 1, "act": 4, "acc": 8, "bias": 2, "m": 1}, "prove",
          15),
    Proof("requant", "stream", {"lanes": 1, "act": 4, "acc": 8, "bias": 4, "m": 2}, "prove",
          15, slow=True),
    Proof("maxpool", "stream", {"simd": 2, "lanes": 2, "act": 3}, "prove", 6),
    Proof("maxpool", "stream", {"simd": 2, "lanes": 2, "act": 4}, "prove", 6, slow=True),
    Proof("writeback", "words", {"lanes": 2, "simd": 1, "act": 3}, "prove", 6),
    Proof("writeback", "slot", {"lanes": 1, "simd": 2, "act": 3}, "prove", 4),
    Proof("writeback", "fused", {"lanes": 2, "simd": 1, "act": 3, "pool": 2}, "prove", 6),
    Proof("writeback", "fused_slot", {"lanes": 1, "simd": 2, "act": 3, "pool": 2}, "prove",
          4),
    Proof("axil", "regmap", {"addr": 8, "data": 32}, "prove", 8),
)


def select(names: list[str] | None = None, *, slow: bool = False) -> list[Proof]:
    """Proofs whose name starts with one of ``names`` (all when None); ``slow`` adds the
    slow ones. Raises ValueError naming an unknown prefix."""
    pool = [p for p in PROOFS if slow or not p.slow]
    if not names:
        return pool
    out = []
    for n in names:
        hit = [p for p in pool if p.name.startswith(n) or p.kind == n]
        if not hit:
            known = ", ".join(sorted({p.kind for p in pool}))
            raise ValueError(f"Proof must name a block ({known}) or a proof name prefix, "
                             f"not {n!r}")
        out += [p for p in hit if p not in out]
    return out


def run_proof(proof: Proof, workdir: Path | str) -> dict:
    """Run one proof in ``workdir/<name>``: a summary row (block, widths, engine, depth,
    result, seconds), and on a failure the counterexample (``inputs`` per cycle), its
    ``vcd`` and the ``replay`` of it against hwq.golden."""
    from hwq.formal.properties import harness
    from hwq.formal.replay import replay
    from hwq.formal.sby import read_trace, run_sby

    bench, wrapped = harness(proof)
    out = run_sby(bench.m, Path(workdir) / proof.name, mode=proof.mode, depth=proof.depth,
                  ports=bench.ports(), engine=proof.engine)
    row = {"name": proof.name, "block": proof.kind, "variant": proof.variant,
           "widths": proof.width_text, "engine": proof.engine,
           "depth": f"{proof.mode} {proof.depth}", "result": out.result,
           "seconds": round(out.seconds, 1)}
    if out.uncovered:
        row["uncovered"] = out.uncovered
    if out.result == "error":
        row["log"] = out.log[-2000:]
    if out.result == "fail":
        row["step"] = out.step
        names = list(bench.inputs)
        steps = [{k: _as_value(v, bench.inputs[k]) for k, v in step.items()}
                 for step in read_trace(out.trace, names)]
        vcd = Path(workdir) / f"{proof.name}.vcd"
        tmp = vcd.with_name(vcd.name + ".tmp")
        shutil.copyfile(out.trace, tmp)
        os.replace(tmp, vcd)                     # written whole or not at all
        row["vcd"] = str(vcd)
        row["inputs"] = steps
        if out.step == "basecase":
            row["replay"] = replay(proof, steps)
    return row


def _as_value(raw: int, sig: object) -> int:
    """A trace's raw bits as the input's value (two's complement for a signed input)."""
    width = len(sig)
    if sig.shape().signed and raw >> (width - 1) & 1:
        return raw - (1 << width)
    return raw


def _worker(args: tuple[Proof, str]) -> dict:
    proof, workdir = args
    try:
        return run_proof(proof, workdir)
    except Exception:  # noqa: BLE001 - reported as the proof's error row
        return {"name": proof.name, "block": proof.kind, "variant": proof.variant,
                "widths": proof.width_text, "engine": proof.engine,
                "depth": f"{proof.mode} {proof.depth}", "result": "error", "seconds": 0.0,
                "log": traceback.format_exc()}


def run_proofs(proofs: list[Proof], workdir: Path | str, *, jobs: int | None = None) -> list:
    """Run ``proofs`` over ``jobs`` processes (default: the CPU count); rows in order."""
    jobs = jobs or os.cpu_count() or 1
    args = [(p, str(workdir)) for p in proofs]
    if jobs == 1 or len(proofs) == 1:
        return [_worker(a) for a in args]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_worker, args))
