"""Data-quality rules as pure functions over a DuckDB relation, shared by the asset checks and the tests.

Each takes a DuckDB connection and the name of a relation (table or view) and returns a
``dagster.AssetCheckResult`` with a human description and sample offending values in its metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg

from ecommerce_assets.storage.warehouses.base import quote_ident

if TYPE_CHECKING:
    import duckdb

SAMPLES = 5


def _samples(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> list:
    return [list(r) if len(r) > 1 else r[0] for r in con.execute(sql + f" LIMIT {SAMPLES}", list(params)).fetchall()]


def no_nulls(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> dg.AssetCheckResult:
    """Fail when ``column`` has a null (or blank text) value."""
    rel, col = quote_ident(relation), quote_ident(column)
    cond = f"{col} IS NULL OR trim(CAST({col} AS VARCHAR)) = ''"
    n = con.execute(f"SELECT count(*) FROM {rel} WHERE {cond}").fetchone()[0]  # noqa: S608
    return dg.AssetCheckResult(
        passed=n == 0,
        description=f"{n} row(s) with a null {column}" if n else f"no null {column}",
        metadata={"failing_rows": int(n)},
    )


def all_positive(con: duckdb.DuckDBPyConnection, relation: str, column: str, key: str) -> dg.AssetCheckResult:
    """Fail when ``column`` is <= 0 (or null) anywhere; sample ``key`` values of offending rows."""
    rel, col, k = quote_ident(relation), quote_ident(column), quote_ident(key)
    where = f"coalesce({col} <= 0, true)"
    n = con.execute(f"SELECT count(*) FROM {rel} WHERE {where}").fetchone()[0]  # noqa: S608
    return dg.AssetCheckResult(
        passed=n == 0,
        description=f"{n} row(s) with {column} <= 0" if n else f"every {column} > 0",
        metadata={
            "failing_rows": int(n),
            "samples": dg.MetadataValue.json(_samples(con, f"SELECT {k}, {col} FROM {rel} WHERE {where}")),  # noqa: S608
        },
    )


def unique_key(con: duckdb.DuckDBPyConnection, relation: str, columns: Sequence[str]) -> dg.AssetCheckResult:
    """Fail when the combination of ``columns`` is not unique (or has nulls)."""
    rel = quote_ident(relation)
    cols = ", ".join(quote_ident(c) for c in columns)
    dup_sql = f"SELECT {cols}, count(*) AS n FROM {rel} GROUP BY {cols} HAVING count(*) > 1"  # noqa: S608
    dups = con.execute(f"SELECT count(*) FROM ({dup_sql})").fetchone()[0]  # noqa: S608
    nulls = con.execute(
        f"SELECT count(*) FROM {rel} WHERE " + " OR ".join(f"{quote_ident(c)} IS NULL" for c in columns)  # noqa: S608
    ).fetchone()[0]
    return dg.AssetCheckResult(
        passed=dups == 0 and nulls == 0,
        description=f"{dups} duplicated and {nulls} null key(s) in ({', '.join(columns)})",
        metadata={"duplicated_keys": int(dups), "null_keys": int(nulls),
                  "samples": dg.MetadataValue.json(_samples(con, dup_sql))},
    )


def references(
    con: duckdb.DuckDBPyConnection, child: str, column: str, parent: str, parent_column: str
) -> dg.AssetCheckResult:
    """Fail when a ``child.column`` value has no row in ``parent.parent_column`` (referential integrity)."""
    c, p = quote_ident(child), quote_ident(parent)
    cc, pc = quote_ident(column), quote_ident(parent_column)
    orphan_sql = f"SELECT DISTINCT {cc} FROM {c} WHERE {cc} NOT IN (SELECT {pc} FROM {p} WHERE {pc} IS NOT NULL)"  # noqa: S608
    n = con.execute(f"SELECT count(*) FROM ({orphan_sql})").fetchone()[0]  # noqa: S608
    return dg.AssetCheckResult(
        passed=n == 0,
        description=f"{n} {column} value(s) in {child} missing from {parent}" if n else f"every {column} is in {parent}",
        metadata={"orphan_values": int(n), "samples": dg.MetadataValue.json(_samples(con, orphan_sql))},
    )


def share_at_most(
    con: duckdb.DuckDBPyConnection, relation: str, column: str, value: str, max_share: float
) -> dg.AssetCheckResult:
    """Warn (severity WARN) when the share of rows with ``column = value`` exceeds ``max_share``."""
    rel, col = quote_ident(relation), quote_ident(column)
    total, hits = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {col} = ?) FROM {rel}", [value]  # noqa: S608
    ).fetchone()
    share = (hits / total) if total else 0.0
    return dg.AssetCheckResult(
        passed=share <= max_share,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{share:.1%} of rows have {column} = {value!r} (threshold {max_share:.0%})",
        metadata={"share": float(share), "rows": int(hits), "threshold": max_share},
    )
