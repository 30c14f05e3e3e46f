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


def run_product(args: list[str], data_dir: Path, settings: dict[str, str]) -> tuple[float, str]:
    """Time ``ecommerce-assets ARGS`` (the console script beside this Python, as a user runs it) in a fresh process
    on ``data_dir`` with ``settings`` (no other ``ECOMMERCE_``/``DAGSTER_`` variable); its seconds and stdout. A
    failed run raises with the end of its output."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOMMERCE_", "DAGSTER_"))}
    env.update({"ECOMMERCE_DATA_DIR": str(data_dir), "ECOMMERCE_ENV": "local", "PYTHONPATH": str(ROOT), **settings})
    cli = [str(Path(sys.executable).parent / "ecommerce-assets"), *args]
    seconds, done = timed(lambda: subprocess.run(cli, cwd=str(ROOT), env=env, capture_output=True, text=True,
                                                 check=False))
    assert isinstance(done, subprocess.CompletedProcess)
    if done.returncode != 0:
        raise RuntimeError(f"ecommerce-assets {' '.join(args)} exited {done.returncode}: "
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds, done.stdout


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
