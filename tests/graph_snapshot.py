"""Print the code location's asset graph as JSON: ``python -m tests.graph_snapshot`` (see test_architecture)."""

from __future__ import annotations

import json
import sys

from ecommerce_assets.definitions import defs

DBT_ADAPTERS = {"duckdb", "postgres", "redshift", "athena"}


def _kinds(kinds: set[str]) -> list[str]:
    """The kinds, with a dbt model's adapter written as ``<dbt adapter>``: it follows the dbt target the manifest
    was last parsed for (the environment), not the code."""
    if "dbt" in kinds:
        return sorted({"<dbt adapter>" if k in DBT_ADAPTERS else k for k in kinds})
    return sorted(kinds)


def snapshot() -> dict:
    """Keys with deps, group, kinds, partitions and automation; checks with blocking; sensors, schedules, jobs."""
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        condition = node.automation_condition
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "kinds": _kinds(node.kinds),
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "automation": (condition.get_label() or condition.name) if condition else None,
            "executable": node.is_executable,
        }
    checks = {k.to_user_string(): {"blocking": graph.get_check_spec(k).blocking}
              for k in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string())}
    jobs = sorted({j.name for j in definitions.jobs or [] if not j.name.startswith("__")})
    return {"assets": assets, "checks": checks, "jobs": jobs,
            "sensors": sorted(s.name for s in definitions.sensors or []),
            "schedules": sorted(s.name for s in definitions.schedules or [])}


if __name__ == "__main__":
    json.dump(snapshot(), sys.stdout, indent=1, sort_keys=True)
