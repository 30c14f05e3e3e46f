"""Paths and small helpers shared by the benchmark runner, its workers and the guard test."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
SHARED_RETAIL = (Path(os.environ["ECOMMERCE_SHARED_DATA"]) if os.environ.get("ECOMMERCE_SHARED_DATA")
                 else ROOT.parent / "shared" / "data") / "online_retail" / "online_retail.csv.gz"
CACHE = Path(os.environ.get("ECOMMERCE_BENCH_CACHE", "/tmp/ecommerce-bench-cache"))


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
