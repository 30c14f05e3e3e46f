"""The prepared (tokenised) distributor inventory is kept between runs: an unchanged inventory is reused without
tokenising, a changed one is tokenised again, and either way the matches are the ones the inventory itself gives.

Real DuckDB engines, real Parquet files on disk (and in S3 through moto's server); the inventory goes through the
same inventory SQL the distributor asset uses.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest

from ecommerce_assets.dev.catalog_sim import distributor_inventory_rows, generate_catalog
from ecommerce_assets.transforms import matching
from tests.test_matching import dist, inventory_parquet, seeded_catalog, seller_parquet


@pytest.fixture
def sellers(tmp_path: Path) -> list[str]:
    """The demo sellers' listings plus a seeded catalog (every method, near misses, generic titles)."""
    catalog = generate_catalog()
    paths = [seller_parquet(e, tmp_path / f"{s}.parquet", s) for s, e in catalog.sellers.items()]
    products, _ = seeded_catalog()
    paths.append(seller_parquet(products, tmp_path / "seeded.parquet", "SEEDED"))
    return paths


def inventory_rows() -> list[dict]:
    _, inventory = seeded_catalog()
    return distributor_inventory_rows() + inventory


def write_inventory(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    return inventory_parquet(duckdb.connect(), rows, path)


def run_match(
    sellers: list[str], inventory: str | list[str] | matching.PreparedInventory, out: Path
) -> tuple:
    """Match in a fresh engine; the result and both output files' rows."""
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    res = matching.match(
        con, sellers, inventory, str(out / "m.parquet"), str(out / "u.parquet"), fee_rate=0.15
    )
    return res, pq.read_table(out / "m.parquet").to_pylist(), pq.read_table(out / "u.parquet").to_pylist()


def prepare(inventory: str | list[str], folder: Path) -> matching.PreparedInventory:
    return matching.prepare_inventory(duckdb.connect(), inventory, str(folder))


def stamp(folder: Path) -> dict[str, tuple[int, int]]:
    """Each prepared part's inode and modification time: unchanged when nothing was rewritten."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_an_unchanged_inventory_is_reused_and_matches_like_the_inventory_itself(
    tmp_path: Path, sellers: list[str]
) -> None:
    inv = write_inventory(tmp_path / "inv" / "inventory.parquet", inventory_rows())
    folder = tmp_path / "prepared"
    cold = prepare(inv, folder)
    assert not cold.reused
    assert {p.name for p in folder.iterdir()} == {
        "items.parquet",
        "token_counts.parquet",
        "brands.parquet",
        "fingerprint.json",
    }
    before = stamp(folder)
    warm = prepare(inv, folder)
    assert warm.reused and warm.uri == cold.uri
    assert stamp(folder) == before  # nothing tokenised or written again
    direct = run_match(sellers, inv, tmp_path / "direct")
    assert run_match(sellers, cold, tmp_path / "cold") == direct
    assert run_match(sellers, warm, tmp_path / "warm") == direct
    res = direct[0]
    assert all(n > 0 for n in res.matched.values()) and res.candidate_pairs > 0 and res.unmatched > 0


def test_a_changed_inventory_is_tokenised_again(tmp_path: Path, sellers: list[str]) -> None:
    rows = inventory_rows()
    path = tmp_path / "inv" / "inventory.parquet"
    inv = write_inventory(path, rows)
    folder = tmp_path / "prepared"
    prepare(inv, folder)
    before_items = pq.read_table(folder / "items.parquet").num_rows
    # the distributor now also carries an item a seeded seller lists in other words (a new title match)
    products, _ = seeded_catalog()
    reworded = next(p for i, p in enumerate(products) if i % 6 == 4)  # an unrelated brand's product
    extra = dist(
        "NEW-1", reworded["product_title"].replace("Generico ", "") + " Generico", "Generico", cost="3.00"
    )
    inv = write_inventory(path, [*rows, extra])
    assert matching.find_prepared(duckdb.connect(), inv, str(folder)) is None
    again = prepare(inv, folder)
    assert not again.reused
    assert pq.read_table(folder / "items.parquet").num_rows == before_items + 1
    direct = run_match(sellers, inv, tmp_path / "direct")
    assert run_match(sellers, again, tmp_path / "prepared_run") == direct
    assert "NEW-1" in {m["distributor_sku"] for m in direct[1]}
    assert prepare(inv, folder).reused  # and the new one is kept in turn


def test_the_same_rows_rewritten_are_recognised_by_their_content(tmp_path: Path, sellers: list[str]) -> None:
    rows = inventory_rows()
    first = write_inventory(tmp_path / "a" / "inventory.parquet", rows)
    folder = tmp_path / "prepared"
    prepare(first, folder)
    before = stamp(folder)["items.parquet"]
    # the same rows in another order, in another file (what reloading the same distributor CSVs produces)
    rewritten = write_inventory(tmp_path / "b" / "inventory.parquet", list(reversed(rows)))
    found = matching.find_prepared(duckdb.connect(), rewritten, str(folder))
    assert found is not None and found.reused
    assert stamp(folder)["items.parquet"] == before
    # its files are recorded, so the next check does not read the rows again
    assert json.loads(json.loads((folder / "fingerprint.json").read_text())["files"])[0][0] == rewritten
    assert run_match(sellers, found, tmp_path / "m1") == run_match(sellers, rewritten, tmp_path / "m2")
    # one changed value (a cost) is a changed inventory, though the row count is the same
    changed = [{**r, "cost": "99.99"} if i == 0 else r for i, r in enumerate(rows)]
    assert (
        matching.find_prepared(
            duckdb.connect(), write_inventory(tmp_path / "c" / "inv.parquet", changed), str(folder)
        )
        is None
    )


def test_an_incomplete_or_foreign_prepared_folder_is_never_reused(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv" / "inventory.parquet", inventory_rows())
    folder = tmp_path / "prepared"
    con = duckdb.connect()
    assert matching.find_prepared(con, inv, str(folder)) is None  # nothing there
    prepare(inv, folder)
    fingerprint = folder / "fingerprint.json"
    good = fingerprint.read_text()
    fingerprint.write_text(good[: len(good) // 2])  # a crash while it was written
    assert matching.find_prepared(con, inv, str(folder)) is None
    record = json.loads(good)
    fingerprint.write_text(
        json.dumps({**record, "rules": "made-by-another-version"})
    )  # other tokenising rules
    assert matching.find_prepared(con, inv, str(folder)) is None
    fingerprint.write_text(json.dumps({**record, "rules": "incomplete"}))  # parts being rewritten
    assert matching.find_prepared(con, inv, str(folder)) is None
    assert not prepare(inv, folder).reused  # each case: tokenised again, then current
    assert json.loads(fingerprint.read_text()) == record
    assert prepare(inv, folder).reused


def test_an_inventory_in_several_files(tmp_path: Path, sellers: list[str]) -> None:
    rows = inventory_rows()
    half = len(rows) // 2
    files = [
        write_inventory(tmp_path / "inv" / "part-1.parquet", rows[:half]),
        write_inventory(tmp_path / "inv" / "part-2.parquet", rows[half:]),
    ]
    prepared = prepare(files, tmp_path / "prepared")
    items = pq.read_table(prepared.part(prepared.ITEMS)).to_pydict()
    assert len(set(items["di_id"])) == len(rows)  # every row its own id across the files
    assert run_match(sellers, prepared, tmp_path / "p") == run_match(sellers, files, tmp_path / "d")
    assert prepare(files, tmp_path / "prepared").reused


def test_prepared_in_s3(moto_endpoint: str, tmp_path: Path, sellers: list[str]) -> None:
    """The fingerprint (object sizes and times, the rows) and the parts are read and written through S3."""
    from ecommerce_assets.storage.s3_lake import S3Lake

    bucket = f"prepared-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    lake = S3Lake(bucket=bucket, prefix="lake", endpoint_url=moto_endpoint, region_name="us-east-1")
    local = write_inventory(tmp_path / "inv" / "inventory.parquet", inventory_rows())
    lake.write_bytes("processed/distributor/inventory.parquet", Path(local).read_bytes())
    inv, folder = (
        lake.uri("processed/distributor/inventory.parquet"),
        lake.uri("processed/distributor/matching/"),
    )
    con = lake.engine()
    cold = matching.prepare_inventory(con, inv, folder)
    assert not cold.reused
    assert {o.key.rsplit("/", 1)[1] for o in lake.list_objects("processed/distributor/matching/")} == {
        "items.parquet",
        "token_counts.parquet",
        "brands.parquet",
        "fingerprint.json",
    }
    warm = matching.prepare_inventory(lake.engine(), inv, folder)
    assert warm.reused
    con = lake.engine()
    res = matching.match(
        con, sellers, warm, str(tmp_path / "m.parquet"), str(tmp_path / "u.parquet"), fee_rate=0.15
    )
    assert res == run_match(sellers, local, tmp_path / "direct")[0]
    lake.write_bytes(
        "processed/distributor/inventory.parquet",  # a changed inventory
        Path(write_inventory(tmp_path / "inv2" / "i.parquet", inventory_rows()[:-1])).read_bytes(),
    )
    assert matching.find_prepared(lake.engine(), inv, folder) is None
