"""``python -m lambdas.build``: reproducible zips holding exactly the handler's own modules, layer pins listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from lambdas import build


def test_build_zips_are_complete_importable_and_reproducible(tmp_path: Path):
    out = tmp_path / "dist"
    assert build.main(["--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    by_name = {m["name"]: m for m in manifest}
    assert {
        "copy_raw_object",
        "s3_arrival_start_run",
        "catalog_page_to_csv",
        "ingest_api",
        "stream_to_archive",
        "stream_to_kv",
        "transaction_generator",
        "transaction_json_to_parquet",
    } <= set(by_name)
    assert all("lambdas/dlq.py" in m["files"] for m in manifest)  # every handler sends failures to the DLQ
    assert all(m["handler"] == f"lambdas.{m['name']}.handler" for m in manifest)

    copy = by_name["copy_raw_object"]
    names = sorted(zipfile.ZipFile(out / "copy_raw_object.zip").namelist())
    assert (
        names
        == sorted(copy["files"])
        == [
            "ecommerce_assets/__init__.py",
            "ecommerce_assets/settings.py",
            "lambdas/copy_raw_object.py",
            "lambdas/dlq.py",
        ]
    )
    # boto3 is in the Lambda runtime; the settings declaration needs pydantic-settings (a few MB, no dagster)
    assert sorted(r.split("==")[0] for r in copy["layer_requirements"]) == ["pydantic", "pydantic-settings"]
    # the S3-arrival Lambda speaks GraphQL with gql (and its requests transport), not dagster-graphql
    arrival = by_name["s3_arrival_start_run"]
    assert sorted(r.split("==")[0] for r in arrival["layer_requirements"]) == [
        "gql[requests]",
        "pydantic",
        "pydantic-settings",
    ]
    assert {"gql", "requests", "requests-toolbelt", "graphql-core"} <= set(arrival["layer_distributions"])

    # no handler needs dagster, directly or through a module of ours or a library
    assert {m["name"]: m["dagster_chain"] for m in manifest} == {m["name"]: [] for m in manifest}
    assert not any("dagster" in m["layer_distributions"] for m in manifest)

    # sizes: the zip as written, its files' bytes unpacked, a layer estimate that grows with the requirements
    for m in manifest:
        zipped = out / m["zip"]
        assert m["bytes"] == zipped.stat().st_size
        assert m["unpacked_bytes"] == sum((build.ROOT / f).stat().st_size for f in m["files"])
    assert 0 < copy["layer_bytes_estimate"] < by_name["catalog_page_to_csv"]["layer_bytes_estimate"]

    # the unzipped package imports its own copies of our modules
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(out / "copy_raw_object.zip").extractall(unpacked)
    probe = (
        "import lambdas.copy_raw_object as h, ecommerce_assets.settings as s; "
        "print(h.__file__); print(s.__file__); print(callable(h.handler))"
    )
    lines = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
    ).stdout.split()
    assert lines[0].startswith(str(unpacked)) and lines[1].startswith(str(unpacked)) and lines[2] == "True"

    # same sources, same bytes
    again = tmp_path / "again"
    build.main(["--out", str(again), "copy_raw_object"])
    assert (again / "copy_raw_object.zip").read_bytes() == (out / "copy_raw_object.zip").read_bytes()


def test_import_closure_follows_relative_and_package_imports(tmp_path: Path):
    files, third = build.closure(build.ROOT / "lambdas" / "s3_arrival_start_run.py")
    rel = {p.relative_to(build.ROOT).as_posix() for p in files}
    assert "lambdas/dlq.py" in rel and "ecommerce_assets/settings.py" in rel
    assert "boto3" in third and "gql" in third and "json" not in third
    assert "dagster_graphql" not in third and "dagster" not in third


def test_dagster_is_traced_to_the_import_that_pulls_it_in():
    chain, direct = build.forbidden_chain(build.ROOT / "ecommerce_assets" / "resources" / "catalog_api.py")
    assert chain == ["ecommerce_assets/resources/catalog_api.py", "dagster"]
    assert direct["ecommerce_assets/resources/catalog_api.py"] == ["dagster"]
    assert build.forbidden_chain(build.ROOT / "lambdas" / "copy_raw_object.py") == ([], {})
    # a library that requires dagster counts too (dagster-graphql -> dagster), dagster-pipes does not
    assert "dagster" in build.distributions_needed("dagster-graphql")
    assert "dagster" not in build.distributions_needed("dagster-pipes")


def test_the_build_prints_sizes_and_fails_over_the_limit(tmp_path: Path):
    """``python -m lambdas.build``: exit 0 and the figures within the limit; exit 1 naming the zip over it."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lambdas.build", "--out", str(tmp_path), *args],
            cwd=build.ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ok = run("copy_raw_object")
    assert ok.returncode == 0, ok.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())[0]
    assert (
        f"copy_raw_object.zip: {manifest['bytes']:,} bytes packed, {manifest['unpacked_bytes']:,} unpacked"
        in ok.stdout
    )
    assert "zip + layer" in ok.stdout and "fits 250 MB" in ok.stdout and "FAIL" not in ok.stdout

    tiny = manifest["unpacked_bytes"] / build.MB  # the zip alone is exactly at the limit: over it
    over = run("copy_raw_object", "--max-mb", f"{tiny:.6f}")
    assert over.returncode == 1
    assert "FAIL: the zip unpacks to" in over.stdout and "copy_raw_object" in over.stderr

    # the layer estimate (pydantic, ~10 MB) counts only with --with-layer
    assert run("copy_raw_object", "--max-mb", "1").returncode == 0
    with_layer = run("copy_raw_object", "--max-mb", "1", "--with-layer")
    assert with_layer.returncode == 1 and "FAIL: zip + layer unpacks to" in with_layer.stdout
