"""Benchmarks (``hwq bench``), apart from the library and the tests.

Timings are ratios measured side by side in one run (the machine is shared and noisy):
each candidate is timed interleaved with its reference, and the median of the repeats is
reported. Every benchmark prints a table and writes JSON.

Subcommands
-----------
golden
    the golden model's int8 conv 3x3 (64 -> 64 channels, 32x32, batch 8) against PyTorch's
    float32 conv on the same shapes.
sim
    simulation speed on the digits test set and a VGG-small-like network
    (:mod:`hwq.bench.sim`): the compiled backend end to end in one process and with
    ``--jobs`` workers, against its own free-running clock; cocotb end to end and
    free-running; Amaranth's Python simulator.
tq, joint
    Transform Quantization (accuracy vs average bits per transform, with and without
    retraining) and joint sparsity-quantization (accuracy vs compression ratio).
hw
    resources and Fmax of the PE arrays and cores with Yosys and nextpnr (:mod:`hwq.bench.hw`).
asic
    the PE arrays on a standard-cell library with Yosys and OpenSTA (:mod:`hwq.bench.asic`;
    not part of ``all``: it needs OpenSTA and a Liberty library).
all
    every benchmark above at a size that fits about 15 minutes on a 2-core machine (``--full``
    for the complete sweeps); one ``all.json`` with every figure and ``summary.md``.
quant
    the quantization results table on a workload (digits by default; lenet5, resnet8,
    sepnet): accuracy at 2..5 weight bits of every ``hwq.quant`` method (post-training and at
    an equal retraining budget) and the Brevitas peer (:mod:`hwq.bench.peer`),
    mean/std/min/max over seeds; also writes a Markdown table and a plot
    (:mod:`hwq.bench.quant`).

The accuracy tables (quant, tq) save their file after every run, resume an interrupted
bench (``--resume``) and spread their independent runs over worker processes (``--jobs``,
:mod:`hwq.bench.pool`); their progress lines estimate the time left.

Modules: :mod:`hwq.bench.cli` is the command, :mod:`hwq.bench.all` runs every section,
and each benchmark has its own module (golden, sim, quant, tq, joint, hw, asic, util,
offchip).
"""

import sys
from pathlib import Path
from typing import Any

#: Where every benchmark writes its JSON, tables and plots unless told otherwise.
DEFAULT_OUT = Path("bench-results")


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out a matplotlib figure, write it as ``path`` (120 dpi, folders made) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def log_line(progress: bool, text: str) -> None:
    """A benchmark's progress line on stderr (one per run), when ``progress``."""
    if progress:
        print(text, file=sys.stderr, flush=True)


def time_left(elapsed: float, finished: int, remaining: int) -> str:
    """An estimate of a bench's remaining wall time, for its progress line: ``elapsed`` seconds
    since this process started its first run, ``finished`` runs done in them (runs kept from
    an earlier sitting do not count), ``remaining`` to go.

    >>> time_left(600.0, 4, 6)
    'about 15 min left'
    >>> time_left(7200.0, 2, 3)
    'about 3 h 00 min left'
    >>> time_left(10.0, 0, 3), time_left(10.0, 3, 0)
    ('', '')
    """
    if finished <= 0 or remaining <= 0:
        return ""
    minutes = round(elapsed / finished * remaining / 60)
    if minutes < 60:
        return f"about {max(minutes, 1)} min left"
    return f"about {minutes // 60} h {minutes % 60:02d} min left"


def cell(value: Any, digits: int = 1) -> str:
    """A table cell: a float to ``digits`` places, None as an em dash, anything else as str."""
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def bits_label(row: dict[str, Any]) -> str:
    """A row's weight bits, with the POT width it used when that differs (``8 (POT7)``)."""
    used = row["weight_bits_used"]
    return str(row["weight_bits"]) + ("" if used == row["weight_bits"] else f" (POT{used})")
