"""What the CLI prints after a run: the warehouse tables with row counts, the lake zones, the UI command."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ecommerce_assets.settings import get_settings


def warehouse_tables(warehouse: Any) -> list[tuple[str, int]]:
    """(schema.table, rows) for every table in the warehouse."""
    from ecommerce_assets.storage.warehouses.base import quote_ident

    rows = warehouse.query(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('information_schema', 'pg_catalog') ORDER BY 1, 2"
    ).to_pylist()
    out = []
    for r in rows:
        name = f"{r['table_schema']}.{r['table_name']}"
        n = warehouse.query(f"SELECT count(*) AS n FROM {quote_ident(name)}").column("n")[0].as_py()  # noqa: S608
        out.append((name, int(n)))
    return out


def _writable_dir(path: Path) -> str | None:
    """None when ``path`` is (or can be made) a writable folder, else why not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def startup_problems() -> list[str]:
    """What stops every pipeline, one line each ([] when none): aws mode with no lake, a data dir or
    DAGSTER_HOME that cannot be written."""
    from ecommerce_assets.resources import build_resources
    from ecommerce_assets.resources.unconfigured import unconfigured

    settings = get_settings()
    problems = []
    for name, path in (("ECOMMERCE_DATA_DIR", settings.data_dir), ("DAGSTER_HOME", settings.dagster_home_dir)):
        why = _writable_dir(path)
        if why:
            problems.append(f"{name}: {path} cannot be written ({why}); point {name} at a writable folder")
    missing = unconfigured(build_resources(settings, dbt=False))
    return problems + [f"{key}: {missing[key]} (see `ecommerce-assets doctor`)" for key in ("lake",) if key in missing]


def startup_warnings() -> list[str]:
    """Optional parts that are off, said once at start (e.g. aws alerts going to the log only)."""
    from ecommerce_assets.resources.notifier import ALERTS_TO_LOG_WARNING

    settings = get_settings()
    return [ALERTS_TO_LOG_WARNING] if settings.env == "aws" and not settings.alerts_topic_arn else []


def print_summary(report: Any, seconds: float) -> None:
    """The end of every ``run``/``demo``: runs and failures, the warehouse tables with row counts, the lake."""
    from ecommerce_assets.resources import build_resources

    settings = get_settings()
    resources = build_resources(settings, dbt=False)
    failed = [label for label, ok in report.runs if not ok]
    failures = list(getattr(report, "failures", []))
    print(f"\n{len(report.runs)} run(s) in {seconds:.1f}s, {len(failed)} failed"
          + (f", {len(failures)} sensor/check failure(s)" if failures else "")
          + f"; {len(report.materialized)} asset(s) materialized")
    for label in failed:
        print(f"  FAILED: {label}")
    for line in failures:
        print(f"  FAILED: {line}")
    try:
        tables = warehouse_tables(resources["warehouse"])
    except Exception as exc:  # the summary must never hide the run's own result
        print(f"(could not list warehouse tables: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        tables = []
    if tables:
        print(f"\nwarehouse ({resources['warehouse'].kind}): {resources['warehouse'].uri('')}")
        by_schema: dict[str, list[str]] = {}
        for name, n in tables:
            schema, _, table = name.partition(".")
            by_schema.setdefault(schema, []).append(f"{table} {n:,}")
        for schema, items in by_schema.items():  # one line per schema: table and rows
            print(f"  {schema + ':':<12} {', '.join(items)}")
    try:
        print(f"\nlake: {resources['lake'].uri('')}")
    except Exception:  # an unconfigured lake has no address
        pass
    print("open the UI:  make ui   (or `ecommerce-assets ui`, then http://127.0.0.1:3000)")
