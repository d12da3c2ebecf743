"""The cache of tool reports: one JSON file per design, tools and options, keyed by content.

``<cache>/reports/<key>.json`` (:func:`hwq.sim.build.cache_root` gives ``<cache>``), the key a
SHA-256 of the options, the tool versions and the synthesized Verilog. Files are written
atomically; a parallel run of the same key waits on ``<key>.lock`` (:func:`locked`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from hwq.serialize import atomic_write, file_lock

__all__ = ["cache_key", "cache_path", "load", "locked", "store"]


def cache_key(options: dict[str, Any], tools: dict[str, str], verilog: str) -> str:
    """24 hex digits of SHA-256 over ``options``, ``tools`` (versions) and ``verilog``."""
    blob = json.dumps({"options": options, "tools": tools}, sort_keys=True)
    return hashlib.sha256(blob.encode() + verilog.encode()).hexdigest()[:24]


def cache_path(key: str, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/reports/<key>.json``."""
    from hwq.sim.build import cache_root

    return Path(cache_root(cache_dir)) / "reports" / f"{key}.json"


@contextmanager
def locked(path: Path, enabled: bool = True) -> Iterator[None]:
    """Hold ``<path>.lock`` (when ``enabled``): a parallel run of the same key waits here."""
    with file_lock(path.with_suffix(".lock")) if enabled else nullcontext():
        yield


def load(path: Path) -> dict[str, Any] | None:
    """The cached result at ``path``, or None when there is none or it does not parse as a
    JSON object (a damaged entry is recomputed, not trusted)."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def store(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` to ``path`` atomically (indented JSON)."""
    atomic_write(path, (json.dumps(result, indent=1) + "\n").encode())
