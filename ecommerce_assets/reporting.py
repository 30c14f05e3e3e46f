"""What the CLI prints after a run: the warehouse tables with row counts, the lake zones, the UI command."""

from __future__ import annotations

from typing import Any

from ecommerce_assets.settings import get_settings


def warehouse_tables(warehouse: Any) -> list[tuple[str, int]]:
    """(schema.table, rows) for every table in the warehouse."""
    from ecommerce_assets.resources.warehouse import quote_ident

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


def print_summary(report: Any, seconds: float) -> None:
    from ecommerce_assets.resources import build_resources

    settings = get_settings()
    resources = build_resources(settings)
    failed = [label for label, ok in report.runs if not ok]
    print(f"\n{len(report.runs)} run(s) in {seconds:.1f}s, {len(failed)} failed; "
          f"{len(report.materialized)} asset(s) materialized")
    for label in failed:
        print(f"  FAILED: {label}")
    try:
        tables = warehouse_tables(resources["warehouse"])
    except Exception as exc:  # the summary must never hide the run's own result
        print(f"(could not list warehouse tables: {exc})")
        tables = []
    if tables:
        print(f"\nwarehouse ({resources['warehouse'].kind}): {resources['warehouse'].uri('')}")
        for name, n in tables:
            print(f"  {name:<45} {n:>10,} rows")
    print(f"\nlake: {resources['lake'].uri('')}")
    print("open the UI:  uv run ecommerce-assets ui   (then http://127.0.0.1:3000)")
