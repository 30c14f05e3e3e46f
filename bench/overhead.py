"""Path 6: whole-graph overhead: the demo from a cold start, and a one-asset materialization; path 0: the
definitions load of a cold process.

* ``demo``: ``ecommerce-assets demo --quiet`` in a fresh data dir (new lake, warehouse and Dagster
  instance), as a subprocess. Split: Dagster start-up (``import dagster`` + loading our definitions,
  measured in a separate cold process), our code (the sum of every run's step durations, from the
  instance's run stats) and the rest (landing the samples, run orchestration, event storage).
* ``one_asset``: a fresh process materializes ``online_retail/cleaned`` (the bundled 5,000-row sample,
  registered in ``raw/`` beforehand) through ``orchestration.execute``. Split: start-up (imports +
  definitions), our code (the step's duration) and Dagster's run overhead (the rest of the run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT

LOAD_CODE = (
    "import sys, time; t0 = time.perf_counter(); import dagster; t1 = time.perf_counter(); "
    "from ecommerce_assets.definitions import build_definitions; "
    "d = build_definitions(sys.argv[1].split(',') if sys.argv[1] else None); d.resolve_asset_graph(); "
    "t2 = time.perf_counter(); print(t1 - t0, t2 - t1, 'dagster_dbt' in sys.modules)"
)
STARTUP_CODE = (
    "import time; t0 = time.perf_counter(); import dagster; t1 = time.perf_counter(); "
    "from ecommerce_assets.definitions import defs; d = defs(); d.resolve_asset_graph(); t2 = time.perf_counter(); "
    "print(t1 - t0, t2 - t1)"
)


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOMMERCE_", "DAGSTER_", "AWS_"))}
    env.update(ECOMMERCE_ENV="local", ECOMMERCE_DATA_DIR=str(work / "data"), DAGSTER_HOME=str(work / "dagster_home"))
    (work / "dagster_home").mkdir(parents=True, exist_ok=True)
    (work / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return env


def _startup(env: dict[str, str], cwd: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", STARTUP_CODE], env=env, cwd=str(cwd), capture_output=True, text=True,
                         check=True)
    imp, load = out.stdout.strip().splitlines()[-1].split()
    return float(imp), float(load)


def _step_seconds(env: dict[str, str], cwd: Path) -> tuple[float, int]:
    code = (
        "import dagster as dg\ni = dg.DagsterInstance.get()\ntotal = 0.0\nruns = i.get_runs()\n"
        "for r in runs:\n    for s in i.get_run_step_stats(r.run_id):\n"
        "        if s.start_time and s.end_time: total += s.end_time - s.start_time\n"
        "print(total, len(runs))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(cwd), capture_output=True, text=True, check=True)
    total, runs = out.stdout.strip().splitlines()[-1].split()
    return float(total), int(runs)


def definitions_load(params: dict, work: Path) -> dict:
    """A cold process loads the definitions (every pipeline, or ``params["pipelines"]``: what a catch-up of those
    loads): ``seconds`` is the load over ``import dagster``, the figure the target bounds."""
    env = _env(work)
    out = subprocess.run([sys.executable, "-c", LOAD_CODE, params.get("pipelines", "")], env=env, cwd=str(ROOT),
                         capture_output=True, text=True, check=True)
    imp, load, dbt = out.stdout.strip().splitlines()[-1].split()
    return {"seconds": float(load), "dagster_import_seconds": float(imp), "dbt_imported": dbt == "True"}


def demo(params: dict, work: Path) -> dict:
    env = _env(work)
    exe = Path(sys.executable).parent / "ecommerce-assets"
    start = time.perf_counter()
    proc = subprocess.run([str(exe), "demo", "--quiet"], env=env, cwd=str(work), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"demo failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-500:]}")
    steps, runs = _step_seconds(env, work)
    imp, load = _startup(env, work)
    other = max(0.0, wall - imp - load - steps)
    return {"seconds": wall, "runs": runs, "dagster_import_seconds": imp, "definitions_load_seconds": load,
            "our_steps_seconds": steps, "other_seconds": other,
            "share_startup": (imp + load) / wall, "share_our_steps": steps / wall, "share_other": other / wall}


def one_asset(params: dict, work: Path) -> dict:
    t0 = time.perf_counter()
    env = _env(work)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ECOMMERCE_", "DAGSTER_"))})
    import dagster as dg

    t_import = time.perf_counter()
    from ecommerce_assets.definitions import defs as load_defs
    from ecommerce_assets.runtime.catchup import execute

    defs = load_defs()
    defs.resolve_asset_graph()
    t_defs = time.perf_counter()
    # setup (not timed): the bundled sample registered in raw/, as the raw asset would leave it
    from ecommerce_assets.resources import build_resources
    from ecommerce_assets.samples import seed_online_retail
    from ecommerce_assets.settings import get_settings

    settings = get_settings()
    lake = build_resources(settings)["lake"]
    for key in seed_online_retail(settings, lake):
        lake.copy(key, key.replace("landing/", "raw/", 1))
    instance = dg.DagsterInstance.get()
    t_run = time.perf_counter()
    ok, _ = execute(defs, instance, [dg.AssetKey(["online_retail", "cleaned"])])
    t_end = time.perf_counter()
    if not ok:
        raise RuntimeError("the one-asset run failed")
    run = instance.get_runs(limit=1)[0]
    steps = sum(s.end_time - s.start_time for s in instance.get_run_step_stats(run.run_id) if s.start_time and s.end_time)
    startup = t_defs - t0
    run_s = t_end - t_run
    total = startup + run_s
    return {"seconds": total, "dagster_import_seconds": t_import - t0, "definitions_load_seconds": t_defs - t_import,
            "run_seconds": run_s, "our_step_seconds": steps, "dagster_run_overhead_seconds": run_s - steps,
            "share_startup": startup / total, "share_our_step": steps / total,
            "share_dagster_run": (run_s - steps) / total, "root": str(ROOT)}
