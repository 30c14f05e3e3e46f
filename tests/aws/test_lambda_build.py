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
    assert {"copy_raw_object", "s3_arrival_start_run", "catalog_page_to_csv", "ingest_api", "stream_to_archive",
            "stream_to_kv", "transaction_generator", "transaction_json_to_parquet"} <= set(by_name)
    assert all("lambdas/dlq.py" in m["files"] for m in manifest)  # every handler sends failures to the DLQ
    assert all(m["handler"] == f"lambdas.{m['name']}.handler" for m in manifest)

    copy = by_name["copy_raw_object"]
    names = sorted(zipfile.ZipFile(out / "copy_raw_object.zip").namelist())
    assert names == sorted(copy["files"]) == [
        "ecommerce_assets/__init__.py", "ecommerce_assets/settings.py", "lambdas/copy_raw_object.py", "lambdas/dlq.py"]
    # boto3 is in the Lambda runtime; the settings declaration needs pydantic-settings (a few MB, no dagster)
    assert sorted(r.split("==")[0] for r in copy["layer_requirements"]) == ["pydantic", "pydantic-settings"]
    assert by_name["s3_arrival_start_run"]["layer_requirements"][0].startswith("dagster-graphql==")

    # the unzipped package imports its own copies of our modules
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(out / "copy_raw_object.zip").extractall(unpacked)
    probe = ("import lambdas.copy_raw_object as h, ecommerce_assets.settings as s; "
             "print(h.__file__); print(s.__file__); print(callable(h.handler))")
    lines = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(unpacked)}).stdout.split()
    assert lines[0].startswith(str(unpacked)) and lines[1].startswith(str(unpacked)) and lines[2] == "True"

    # same sources, same bytes
    again = tmp_path / "again"
    build.main(["--out", str(again), "copy_raw_object"])
    assert (again / "copy_raw_object.zip").read_bytes() == (out / "copy_raw_object.zip").read_bytes()


def test_import_closure_follows_relative_and_package_imports(tmp_path: Path):
    files, third = build.closure(build.ROOT / "lambdas" / "s3_arrival_start_run.py")
    rel = {p.relative_to(build.ROOT).as_posix() for p in files}
    assert "lambdas/dlq.py" in rel and "ecommerce_assets/settings.py" in rel
    assert "boto3" in third and "dagster_graphql" in third and "json" not in third
