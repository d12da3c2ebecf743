"""A sweep's table as Markdown, CSV and JSON, and its plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hwq.serialize import atomic_write

__all__ = ["COLUMNS", "format_table", "write_outputs"]

#: (key, header, format) of the table's columns, in order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("method", "method", "{}"), ("bits", "bits", "{}"), ("pe", "PE", "{}"),
    ("lanes", "lanes", "{}"), ("simd", "simd", "{}"), ("weights", "weights", "{}"),
    ("accuracy", "accuracy %", "{:.2f}"),
    ("weight_bits", "weight bits", "{:,}"), ("cycles", "cycles", "{:,}"),
    ("utilization", "util %", "{:.1%}"), ("device", "part", "{}"), ("lut4", "LUT4", "{:,}"),
    ("ff", "FF", "{:,}"), ("carry", "CCU2C", "{:,}"), ("dsp", "DSP", "{}"),
    ("bram", "BRAM", "{}"), ("fmax_mhz", "Fmax MHz", "{:.1f}"),
    ("inferences_per_s", "inf/s", "{:,.0f}"), ("inferences_per_s_per_klut", "inf/s/kLUT",
                                               "{:,.1f}"),
    ("pareto", "Pareto", "{}"),
)


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if key == "pareto":
        return "*" if value else ""
    if key == "utilization":
        return f"{value * 100:.1f}"
    return fmt.format(value)


def format_table(result: dict[str, Any]) -> str:
    """The rows as a Markdown table (the Pareto front starred), failures listed after it."""
    rows = result["points"]
    lines = [f"# hwq explore: {result['model']} ({len(rows)} points; Pareto over "
             + ", ".join(f"{k} {'max' if s > 0 else 'min'}" for k, s in result["objectives"])
             + ")", "",
             "| " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r, k, f) for k, _, f in COLUMNS) + " |")
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", "Failed points:"] + [f"- {r['label']}: {r['error']}" for r in failed]
    if result.get("skipped"):
        lines += ["", f"{len(result['skipped'])} combinations dropped (cannot exist): "
                  + "; ".join(sorted({s["reason"] for s in result["skipped"]}))]
    if result.get("best") is not None:
        b = result["best"]
        lines += ["", f"Best within the budget: {b['label']}"]
    elif result.get("budget"):
        lines += ["", "No point meets the budget "
                  + ", ".join(f"{k} {v}" for k, v in result["budget"].items() if v is not None)]
    return "\n".join(lines)


def _csv(rows: list[dict[str, Any]]) -> str:
    keys = [k for k, _, _ in COLUMNS] + ["fp32_accuracy", "compression", "lut4_eq",
                                         "act_peak_words", "error", "cached"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in keys})
    return buf.getvalue()


def _plots(result: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["points"] if not r.get("error")]
    written = []
    for x_key, x_label, name in (("lut4_eq", "LUT-equivalents (LUT4 + 2 CCU2C + 4 LUT-RAM)",
                                  "accuracy_vs_luts.png"),
                                 ("inferences_per_s", "inferences/s at routed Fmax",
                                  "accuracy_vs_speed.png")):
        pts = [r for r in rows if r.get(x_key) is not None]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for pe in sorted({r["pe"] for r in pts}):
            sel = [r for r in pts if r["pe"] == pe]
            ax.scatter([r[x_key] for r in sel], [r["accuracy"] for r in sel], label=pe)
        front = sorted((r for r in pts if r.get("pareto")), key=lambda r: r[x_key])
        if front:
            ax.scatter([r[x_key] for r in front], [r["accuracy"] for r in front],
                       facecolors="none", edgecolors="black", s=120, label="Pareto front")
        ax.set_xlabel(x_label)
        ax.set_ylabel("accuracy % (integer network, golden)")
        ax.set_title(f"hwq explore: {result['model']}")
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write(out / name, buf.getvalue())
        written.append(str(out / name))
    return written


def write_outputs(result: dict[str, Any], out: Path, *, plots: bool = True) -> dict[str, Any]:
    """``explore.md``, ``explore.csv``, ``explore.json`` (and plots) in ``out``; their paths."""
    files = {"markdown": str(out / "explore.md"), "csv": str(out / "explore.csv"),
             "json": str(out / "explore.json")}
    atomic_write(out / "explore.md", (format_table(result) + "\n").encode())
    atomic_write(out / "explore.csv", _csv(result["points"]).encode())
    if plots:
        files["plots"] = _plots(result, out)
    result["files"] = files
    atomic_write(out / "explore.json", (json.dumps(result, indent=1, default=str) + "\n")
                 .encode())
    return files
