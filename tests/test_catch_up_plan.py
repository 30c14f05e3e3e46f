"""The headless catch-up loads only what it needs (issue 14): a cheap landing check per source, then the
definitions of the pipelines whose landing changed since their last complete catch-up.

Real processes of the product's CLI on a fresh data dir, the bundled Online Retail sample landed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests import faults
from tests.daemon import ROOT

SAMPLE = ROOT / "ecommerce_assets" / "samples" / "online_retail_sample.csv"


def landed(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    data_dir = tmp_path / "data"
    landing = data_dir / "lake" / "landing" / "online_retail"
    landing.mkdir(parents=True)
    shutil.copy(SAMPLE, landing / "online_retail.csv")
    return landing, faults.cli_env(data_dir)


def loaded(profile_output: str) -> list[str]:
    """The pipelines a ``run --profile`` loaded the definitions of (its profile's line)."""
    match = re.search(r"definitions load \(([^)]*)\)", profile_output)
    assert match, profile_output[-2000:]
    return [p.strip() for p in match.group(1).split(",")]


def run_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("ok ", "FAILED"))]


def test_a_retail_only_catch_up_never_imports_dbt(tmp_path: Path) -> None:
    _, env = landed(tmp_path)
    code = (
        "import json, sys; from ecommerce_assets.runtime.catchup import load_definitions, plan_catch_up; "
        "plan = plan_catch_up(); defs = load_definitions(plan.load); "
        "keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()); "
        "print(json.dumps({'load': plan.load, 'keys': keys, 'dagster_dbt': 'dagster_dbt' in sys.modules, "
        "'dbt': 'dbt' in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=False, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "retail" in got["load"] and "orders" not in got["load"], got["load"]
    assert "gold/sales_transactions" in got["keys"] and not any(k.startswith("orders/") for k in got["keys"])
    assert (got["dagster_dbt"], got["dbt"]) == (False, False), "dbt imported by a retail-only catch-up"


def test_an_unchanged_landing_is_skipped_and_a_changed_one_is_processed(tmp_path: Path) -> None:
    landing, env = landed(tmp_path)

    first = faults.run(env, "run", "--profile")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "retail" in loaded(first.stdout)
    assert len(run_lines(first.stdout)) == 1 and "online_retail/cleaned" in run_lines(first.stdout)[0], first.stdout

    # nothing new: the retail definitions are not even loaded, and the console says why
    second = faults.run(env, "run", "--profile")
    assert second.returncode == 0, second.stdout[-3000:]
    assert "retail" not in loaded(second.stdout), second.stdout
    assert re.search(r"^skip +retail +nothing new landed since the last catch-up$", second.stdout, re.M), second.stdout
    assert run_lines(second.stdout) == []

    # named explicitly: loaded (its stale assets checked), and still nothing to run
    named = faults.run(env, "run", "--pipeline", "retail", "--profile")
    assert named.returncode == 0 and loaded(named.stdout) == ["retail"], named.stdout
    assert run_lines(named.stdout) == []

    # a second file lands: the landing changed, so the pipeline is loaded and the new file processed
    rows = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    (landing / "more.csv").write_text(rows[0] + "".join(r.replace("536", "936", 1) for r in rows[1:50]),
                                      encoding="utf-8")
    third = faults.run(env, "run", "--profile")
    assert third.returncode == 0, third.stdout[-3000:]
    assert "retail" in loaded(third.stdout)
    assert len(run_lines(third.stdout)) == 1, third.stdout
