"""Regression guard of the benchmark suite (issue 8): a fast subset of ``bench/`` on small inputs.

Each test compares two implementations run interleaved in this process (medians of several runs, after
a warm-up) and fails only when a RATIO passes its bound, never on an absolute time. The bounds are the
ratios measured on the 2-core reference machine times a wide margin (x2 or more), so a noisy CI
machine does not fail them, while a change that makes a path several times slower does; see
``docs/bench.md`` for the full-size figures and targets.
"""

from __future__ import annotations

import csv
import datetime as dt
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import retail as bench_retail
from bench import retail_e2e as bench_retail_e2e
from bench import small_files as bench_small_files
from bench import transactions as bench_transactions

# timing ratios: run in the suite's serial phase (`make test` runs the slow tests one at a time)
pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[1] / "ecommerce_assets" / "samples" / "online_retail_sample.csv"

# measured on the reference machine at these sizes (median ratio), and the guard's bound
RETAIL_RATIO_MEASURED, RETAIL_RATIO_BOUND = 1.33, 2.6  # product / DuckDB floor, 40,000 rows
# product / DuckDB floor, 50,000 records: the product commits each date to the Iceberg table (issue 15; a fixed
# ~0.05-0.1 s a commit, and a scan of the JSON keys for new fields), the floor writes folders with one COPY; 1.4
# before the Iceberg tables, 3.2 after (3.1-3.4 at 1 M and 10 M rows in bench/, docs/bench.md)
TX_RATIO_MEASURED, TX_RATIO_BOUND = 3.2, 6.0
SMALL_FILES_MEASURED, SMALL_FILES_BOUND = 11.0, 3.0  # one call per file / batched, 20 files (at least)
# `ecommerce-assets run` on a fresh data dir / one DuckDB process, the 5,000-row sample: at this size the ratio is
# mostly the product's start-up and Dagster's per-run work (the full-size targets are in bench/, issue 14)
RETAIL_E2E_MEASURED, RETAIL_E2E_BOUND = 6.8, 14.0


def _interleaved(fns: dict[str, Callable[[Path], object]], tmp: Path, runs: int) -> dict[str, float]:
    """Median seconds of each function, run interleaved (order rotating) after one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(runs + 1):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            work = tmp / f"{name}-{i}"
            work.mkdir()
            start = time.perf_counter()
            fns[name](work)
            if i:  # run 0 is the warm-up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


@pytest.fixture
def retail_csv(tmp_path: Path) -> Path:
    """The bundled 400-row sample x100 (invoice numbers suffixed per copy, so copies are not duplicates)."""
    with SAMPLE.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    out = tmp_path / "retail.csv"
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(rows[0])
        for copy in range(100):
            for r in rows[1:]:
                w.writerow([f"{r[0]}-{copy}", *r[1:]])
    return out


def test_retail_product_stays_near_the_duckdb_floor(retail_csv: Path, tmp_path: Path) -> None:
    fns = {
        "product": lambda work: bench_retail.product({"csv": str(retail_csv)}, work),
        "floor": lambda work: bench_retail.floor({"csv": str(retail_csv)}, work),
    }
    # the two implementations agree before they are compared
    (tmp_path / "check-a").mkdir()
    (tmp_path / "check-b").mkdir()
    a = bench_retail.product({"csv": str(retail_csv)}, tmp_path / "check-a")
    b = bench_retail.floor({"csv": str(retail_csv)}, tmp_path / "check-b")
    assert (a["rows_in"], a["rows_out"], a["star_rows"]) == (b["rows_in"], b["rows_out"], b["star_rows"])
    t = _interleaved(fns, tmp_path, runs=3)
    ratio = t["product"] / t["floor"]
    assert ratio <= RETAIL_RATIO_BOUND, (
        f"Online Retail product/floor = {ratio:.2f} (product {t['product']:.2f} s, floor {t['floor']:.2f} s); "
        f"bound {RETAIL_RATIO_BOUND} (measured {RETAIL_RATIO_MEASURED} on the reference machine)"
    )


def test_retail_end_to_end_stays_near_one_duckdb_process(tmp_path: Path) -> None:
    """The headline path as a user waits for it: the sample landed in a fresh data dir, `ecommerce-assets run`
    to the gold tables, against one Python process with DuckDB producing the same tables."""
    from tests.conftest import RETAIL_SAMPLE_5000

    params = {"csv": str(RETAIL_SAMPLE_5000)}
    fns = {
        "product": lambda work: bench_retail_e2e.product(params, work),
        "floor": lambda work: bench_retail_e2e.floor(params, work),
    }
    (tmp_path / "check-a").mkdir()
    (tmp_path / "check-b").mkdir()
    a = bench_retail_e2e.product(params, tmp_path / "check-a")
    b = bench_retail_e2e.floor(params, tmp_path / "check-b")
    assert a["gold_rows"] == b["gold_rows"] and a["gold_rows"]["sales_transactions"] > 4_000, (a, b)
    t = _interleaved(fns, tmp_path, runs=3)
    ratio = t["product"] / t["floor"]
    assert ratio <= RETAIL_E2E_BOUND, (
        f"retail end to end product/floor = {ratio:.2f} (product {t['product']:.2f} s, floor {t['floor']:.2f} s); "
        f"bound {RETAIL_E2E_BOUND} (measured {RETAIL_E2E_MEASURED} on the reference machine)"
    )


@pytest.fixture
def transactions_root(tmp_path: Path) -> Path:
    from ecommerce_assets.services.transactions_generator import generate_files, land
    from ecommerce_assets.storage.lake import LocalLake

    root = tmp_path / "tx"
    land(LocalLake(base_dir=str(root)), generate_files(50_000, per_file=5_000, fmt="lines", seed=11, days=1,
                                                       end_date=dt.date(2024, 3, 10)))
    return root


def test_transactions_product_ratio_to_the_duckdb_floor(transactions_root: Path, tmp_path: Path) -> None:
    params = {"root": str(transactions_root)}
    fns = {
        "product": lambda work: bench_transactions.product(params, work),
        "floor": lambda work: bench_transactions.floor(params, work),
    }
    t = _interleaved(fns, tmp_path, runs=3)
    ratio = t["product"] / t["floor"]
    assert ratio <= TX_RATIO_BOUND, (
        f"transactions product/floor = {ratio:.2f} (product {t['product']:.2f} s, floor {t['floor']:.2f} s); "
        f"bound {TX_RATIO_BOUND} (measured {TX_RATIO_MEASURED} on the reference machine)"
    )


def test_batched_small_files_beat_one_call_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_small_files, "CACHE", tmp_path / "cache")
    params = {"files": 20}
    bench_small_files.prepare(20)
    fns = {
        "batched": lambda work: bench_small_files.batched(params, work),
        "per_call": lambda work: bench_small_files.per_call(params, work),
    }
    t = _interleaved(fns, tmp_path, runs=3)
    speedup = t["per_call"] / t["batched"]
    assert speedup >= SMALL_FILES_BOUND, (
        f"batched small files only {speedup:.1f}x faster than one call per file (batched {t['batched']:.2f} s, "
        f"per call {t['per_call']:.2f} s); bound {SMALL_FILES_BOUND}x (measured {SMALL_FILES_MEASURED}x)"
    )
