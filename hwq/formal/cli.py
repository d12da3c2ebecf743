"""``hwq prove``: prove the RTL blocks equal to hwq.golden with SymbiYosys.

    hwq prove [PROOF ...] [--slow] [--jobs N] [-o DIR] [--list] [--json]

runs the proofs of :data:`hwq.formal.proofs.PROOFS` (all default ones, or those whose name
starts with a ``PROOF`` argument or whose block is named) in parallel over ``--jobs``
processes and prints a table: block, variant, widths, engine, depth, result, seconds. A
proof fails when an assertion fails or a cover is not reached; a failed assertion prints
the counterexample's inputs per cycle, its replay against hwq.golden, and writes its trace
to ``DIR/<proof>.vcd``. Exit 1 when any proof fails.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("proofs", nargs="*", metavar="PROOF",
                        help="block (pe, mac_array, requant, maxpool, writeback, axil) or proof "
                             "name prefix (see --list); default: every default proof")
    parser.add_argument("--slow", action="store_true",
                        help="include the proofs at larger widths (minutes each)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="proofs run at once (default: the CPU count)")
    parser.add_argument("-o", "--output", default="build/prove", metavar="DIR",
                        help="folder for SBY's work and counterexample traces "
                             "(default: build/prove)")
    parser.add_argument("--list", action="store_true", help="list the proofs and stop")


def _table(rows: list[dict]) -> str:
    cols = ("block", "variant", "widths", "engine", "depth", "result", "seconds")
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = lambda xs: "  ".join(x.ljust(w) for x, w in zip(xs, widths, strict=True))  # noqa: E731
    return "\n".join([line(cols)] + [line(x) for x in cells])


def _details(row: dict) -> list[str]:
    out = [f"{row['name']}: {row['result']}"]
    if row.get("uncovered"):
        out.append("  covers not reached: " + ", ".join(row["uncovered"]))
    if row["result"] == "fail":
        out.append(f"  counterexample ({row['step']}), trace {row['vcd']}:")
        for t, step in enumerate(row["inputs"]):
            out.append(f"    cycle {t}: " + " ".join(f"{k}={v}" for k, v in step.items()))
        if "replay" in row:
            out.append("  replay against hwq.golden:")
            out += [f"    {m}" for m in row["replay"]] or ["    (no golden mismatch)"]
    if row["result"] == "error":
        out.append("  " + row.get("log", "").strip().replace("\n", "\n  "))
    return out


def run(args: argparse.Namespace) -> int:
    from hwq.cli import check_output, emit
    from hwq.formal.proofs import run_proofs, select

    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"Jobs must be a positive integer, not {args.jobs!r}")
    proofs = select(args.proofs or None, slow=args.slow)
    if args.list:
        rows = [{"name": p.name, "block": p.kind, "variant": p.variant,
                 "widths": p.width_text, "engine": p.engine, "depth": f"{p.mode} {p.depth}",
                 "slow": p.slow} for p in proofs]
        emit(args, {"ok": True, "proofs": rows}, "\n".join(
            f"{r['name']}  ({r['engine']}, {r['depth']}{', slow' if r['slow'] else ''})"
            for r in rows))
        return 0
    from hwq.formal.sby import sby_tools

    sby_tools()                      # a missing tool fails here, before any proof runs
    check_output(args.output, "-o/--output", folder=True)
    rows = run_proofs(proofs, args.output, jobs=args.jobs)
    failed = [r for r in rows if r["result"] != "pass"]
    text = [_table(rows)]
    for r in failed:
        text += _details(r)
    ok = not failed
    text.append(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    emit(args, {"ok": ok, "proofs": rows}, "\n".join(text))
    if not ok:
        print(f"hwq prove: {len(failed)} of {len(rows)} proof(s) failed: "
              f"{', '.join(r['name'] for r in failed)}", file=sys.stderr)
    return 0 if ok else 1
