"""Loading the definitions imports no library that only a step or a resource needs at run time (issue 14).

A headless run (``ecommerce-assets run``) loads the definitions of the pipelines that have input before it
runs anything; pyarrow, DuckDB, boto3/botocore and pandas cost that load time and are needed only by the
steps and resources that use them, which import them when they run. Each case loads the definitions in a
fresh interpreter (a subprocess: this process has imported everything already) and names, for every such
library that was imported anyway, the module of ours whose import statement brought it in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_TIME_ONLY = ("pyarrow", "numpy", "duckdb", "boto3", "botocore", "pandas")

# Loads the definitions of the pipelines in argv[1] (JSON) and prints {library: "file:line"} for each
# run-time-only library imported meanwhile: the innermost frame of ours that executed the import.
CHILD = """
import json, sys, traceback

import dagster  # what Dagster itself imports is not ours to avoid

LIBRARIES = set(json.loads(sys.argv[2]))
already = {name for name in LIBRARIES if name in sys.modules}
importers = {}


class Recorder:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in LIBRARIES and top not in importers:
            ours = [f for f in traceback.extract_stack() if "/ecommerce_assets/" in f.filename]
            where = ours[-1] if ours else None
            importers[top] = f"{where.filename.split('/ecommerce_assets/')[-1]}:{where.lineno}" if where else "?"
        return None  # record only: the import goes on


sys.meta_path.insert(0, Recorder())
from ecommerce_assets.definitions import build_definitions

definitions = build_definitions(json.loads(sys.argv[1]))
definitions.resolve_asset_graph()
print(json.dumps({
    "already": sorted(already),
    "imported": {name: importers.get(name, "?") for name in sorted(LIBRARIES) if name in sys.modules},
    "assets": len(list(definitions.resolve_asset_graph().get_all_asset_keys())),
}))
"""


@pytest.mark.parametrize("pipeline", ["retail", "transactions"])
def test_loading_a_pipelines_definitions_imports_no_run_time_library(pipeline: str, data_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([pipeline]), json.dumps(RUN_TIME_ONLY)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["already"] == [], f"`import dagster` alone imports {result['already']}: the check means nothing"
    assert result["assets"] > 0, "the definitions hold no asset: nothing was loaded"
    assert result["imported"] == {}, (
        f"loading the {pipeline} definitions imported {sorted(result['imported'])}, first by (under "
        f"ecommerce_assets/) {result['imported']}: import it inside the function that uses it"
    )
