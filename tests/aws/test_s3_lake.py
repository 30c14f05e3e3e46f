"""S3Lake against moto's server: listing past 1,000 keys, prefixes, writes, deletes, and DuckDB on s3://."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def test_uri_and_key_round_trip(s3_lake, aws_env):
    uri = s3_lake.uri("landing/online_retail/a.csv")
    assert uri == f"s3://{aws_env['ECOMMERCE_S3_BUCKET']}/lake/landing/online_retail/a.csv"
    assert s3_lake.key_of(uri) == "landing/online_retail/a.csv"
    with pytest.raises(ValueError):
        s3_lake.uri("landing/../secrets")
    with pytest.raises(ValueError):
        s3_lake.key_of("s3://other-bucket/lake/x")


def test_list_objects_paginates_past_1000_keys(s3_lake, s3_client, aws_env):
    bucket = aws_env["ECOMMERCE_S3_BUCKET"]
    keys = [f"raw/many/date=2026-01-01/f{i:05d}.csv" for i in range(1205)]
    for key in keys:
        s3_client.put_object(Bucket=bucket, Key=f"lake/{key}", Body=b"x")
    s3_client.put_object(Bucket=bucket, Key="outside/raw/many/x.csv", Body=b"x")  # not in the lake prefix

    listed = [o.key for o in s3_lake.list_objects("raw/many/")]
    assert listed == sorted(keys)
    after = [o.key for o in s3_lake.list_objects("raw/many/", start_after=keys[999])]
    assert after == sorted(keys)[1000:]
    assert all(o.size == 1 and o.version for o in s3_lake.list_objects("raw/many/date=2026-01-01/f0000"))


def test_list_prefixes_is_one_level(s3_lake):
    for key in ["landing/a/date=2026-01-01/x.csv", "landing/a/date=2026-01-02/y.csv",
                "landing/a/date=2026-01-02/deep/z.csv", "landing/a/top.csv", "landing/b/q.csv"]:
        s3_lake.write_bytes(key, b"1")
    assert s3_lake.list_prefixes("landing/a") == ["landing/a/date=2026-01-01/", "landing/a/date=2026-01-02/"]
    assert s3_lake.list_prefixes("landing/") == ["landing/a/", "landing/b/"]
    assert s3_lake.list_prefixes("") == ["landing/"]
    assert s3_lake.list_prefixes("nothing/") == []


def test_objects_write_read_copy_stat_delete(s3_lake, tmp_path):
    uri = s3_lake.write_bytes("raw/x/one.csv", b"a,b\n1,2\n")
    assert uri.endswith("/lake/raw/x/one.csv")
    s3_lake.write_bytes("raw/x/one.csv", b"a,b\n3,4\n")  # overwrite: the whole new object, nothing else
    assert s3_lake.read_bytes("raw/x/one.csv") == b"a,b\n3,4\n"
    assert [o.key for o in s3_lake.list_objects("raw/")] == ["raw/x/one.csv"]

    s3_lake.copy("raw/x/one.csv", "archive/x/one.csv")
    assert s3_lake.read_bytes("archive/x/one.csv") == b"a,b\n3,4\n"
    stat = s3_lake.stat("archive/x/one.csv")
    assert (stat.key, stat.size) == ("archive/x/one.csv", 8)
    assert s3_lake.exists("raw/x/one.csv") and not s3_lake.exists("raw/x/none.csv")
    with pytest.raises(FileNotFoundError):
        s3_lake.stat("raw/x/none.csv")

    local = s3_lake.open_local("raw/x/one.csv")
    assert local.read_bytes() == b"a,b\n3,4\n"
    s3_lake.write_bytes("raw/x/one.csv", b"changed")
    assert s3_lake.open_local("raw/x/one.csv").read_bytes() == b"changed"  # new ETag, new download

    # delete_prefix: the folder's objects (more than one DeleteObjects batch) but not a sibling 'raw/xy'
    for i in range(1003):
        s3_lake.write_bytes(f"raw/x/many/{i}.csv", b"1")
    s3_lake.write_bytes("raw/xy/keep.csv", b"1")
    assert s3_lake.delete_prefix("raw/x") == 1004
    assert [o.key for o in s3_lake.list_objects("raw/")] == ["raw/xy/keep.csv"]
    assert s3_lake.delete_prefix("raw/xy/keep.csv") == 1
    assert s3_lake.delete_prefix("raw/") == 0


def test_engine_writes_and_reads_s3_parquet_csv_json(s3_lake, tmp_path):
    con = s3_lake.engine()
    target = s3_lake.uri("processed/sales")
    con.execute(
        "COPY (SELECT i AS id, 'd' || (i % 3) AS day, i * 1.5 AS amount FROM range(3000) t(i)) "  # noqa: S608
        f"TO '{target}' (FORMAT parquet, PARTITION_BY (day))"
    )
    keys = [o.key for o in s3_lake.list_objects("processed/sales/")]
    assert {k.split("/")[2] for k in keys} == {"day=d0", "day=d1", "day=d2"}
    total = con.execute(
        "SELECT count(*), sum(id), count(DISTINCT day) FROM read_parquet(?, hive_partitioning = true)",
        [s3_lake.uri("processed/sales/*/*.parquet")],
    ).fetchone()
    assert total == (3000, sum(range(3000)), 3)

    # a file written by another tool (pyarrow) is read back through s3://
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"k": [1, 2], "v": ["a", None]}), path)
    s3_lake.write_bytes("processed/other/t.parquet", path.read_bytes())
    assert con.execute("SELECT k, v FROM read_parquet(?) ORDER BY k", [s3_lake.uri("processed/other/t.parquet")]
                       ).fetchall() == [(1, "a"), (2, None)]

    s3_lake.write_bytes("landing/x/a.csv", b"InvoiceNo,Quantity\n536365,6\n536366,-1\n")
    assert con.execute("SELECT sum(Quantity) FROM read_csv(?)", [s3_lake.uri("landing/x/a.csv")]).fetchone() == (5,)
    s3_lake.write_bytes("landing/x/a.json", b'[{"id": 1, "tags": ["a"]}, {"id": 2, "tags": []}]')
    assert con.execute("SELECT sum(len(tags)), max(id) FROM read_json(?)",
                       [s3_lake.uri("landing/x/a.json")]).fetchone() == (1, 2)
    con.close()


def test_a_folder_write_is_staged_aside_then_replaces_the_folder(s3_lake, s3_client, aws_env):
    old = ["processed/d/cleaned/part=0/old.parquet", "processed/d/cleaned/part=9/stale.parquet"]
    for key in old:
        s3_lake.write_bytes(key, b"old")
    with s3_lake.writing("processed/d/cleaned/") as uri:
        staging = s3_lake.key_of(uri)
        assert staging.startswith("processed/d/.tmp-") and staging.endswith("/")
        s3_lake.write_bytes(staging + "part=0/new.parquet", b"new")
        assert [o.key for o in s3_lake.list_objects("processed/d/")] == old, "the in-flight prefix is listed"
    assert [o.key for o in s3_lake.list_objects("processed/")] == ["processed/d/cleaned/part=0/new.parquet"]
    bucket = aws_env["ECOMMERCE_S3_BUCKET"]
    everything = s3_client.list_objects_v2(Bucket=bucket, Prefix="lake/processed/").get("Contents", [])
    assert [o["Key"] for o in everything] == ["lake/processed/d/cleaned/part=0/new.parquet"], "staging left behind"

    with pytest.raises(RuntimeError), s3_lake.writing("processed/d/cleaned/") as uri:
        s3_lake.write_bytes(s3_lake.key_of(uri) + "part=1/half.parquet", b"half")
        raise RuntimeError("the writer failed")
    everything = s3_client.list_objects_v2(Bucket=bucket, Prefix="lake/processed/").get("Contents", [])
    assert [o["Key"] for o in everything] == ["lake/processed/d/cleaned/part=0/new.parquet"]
