"""The architecture as rules the code must keep, checked from the source (AST), plus the asset graph as a
reviewed snapshot.

* ``storage/``, ``transforms/``, ``services/``, ``settings.py`` and ``lambdas/`` import no Dagster, not even
  lazily and not through another module of ours: the Lambda handlers ship without it.
* ``spark_jobs/`` (the PySpark scripts a Glue or EMR job runs alone) import only the standard library, PySpark and
  ``dagster_pipes``: nothing of ours.
* An optional dependency (an extra: ``spark``) is imported only inside functions outside ``spark_jobs/``, so that
  the product loads without it.
* ``defs/`` (loaded by the code location) never imports the dev tools (``dev/``) or the CLI (``cli/``).
* No private Dagster module (``dagster._...``) is imported anywhere.
* Every third-party library the code imports is declared in ``pyproject.toml``, and every declared library is
  imported (or is a plugin named in ``PLUGINS`` with what loads it).
* The asset graph (keys, deps, groups, kinds, partitions, checks, automation, sensors, schedules) equals
  ``tests/snapshots/asset_graph.json``; a change to the graph is a reviewed diff of that file
  (``UPDATE_SNAPSHOTS=1 pytest tests/test_architecture.py`` rewrites it).
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ecommerce_assets"
NO_DAGSTER = [PACKAGE / "storage", PACKAGE / "transforms", PACKAGE / "services", PACKAGE / "settings.py",
              ROOT / "lambdas", PACKAGE / "spark_jobs"]
# the Spark jobs run where only Spark is (a Glue or EMR job): the standard library, PySpark, the Pipes protocol and
# boto3 (which Glue and EMR provide)
SPARK_JOB_LIBS = {"pyspark", "dagster_pipes", "boto3"}
# the modules of the Spark jobs' folder, shipped together (a job imports the shared one beside it)
SPARK_JOB_MODULES = {p.stem for p in (PACKAGE / "spark_jobs").glob("*.py")}
DAGSTER_FREE_LIBS = {"dagster_pipes"}  # the Pipes protocol library: no dependency on dagster itself
SNAPSHOT = ROOT / "tests" / "snapshots" / "asset_graph.json"
# declared libraries no module imports by name, and what uses them
PLUGINS = {
    "dagster-webserver": "the UI (`dagster dev`, `make ui`)",
    "dagster-dg-cli": "the `dg` CLI over [tool.dg]",
    "dbt-core": "dagster-dbt runs it",
    "dbt-duckdb": "dbt adapter of the local warehouse",
    "dbt-postgres": "dbt adapter of the PostgreSQL warehouse",
    "dbt-redshift": "dbt adapter of the Redshift warehouse",
    "dbt-athena-community": "dbt adapter of the Athena warehouse",
    "duckdb-extension-httpfs": "the offline httpfs extension DuckDB loads from its wheel",
}
DEV_PLUGINS = {
    "pytest-timeout": "pytest plugin",
    "pytest-xdist": "pytest plugin (`make test` runs the suite on two workers)",
    "ruff": "the linter (`make lint`)",
    "httpx": "FastAPI's TestClient",
}


def py_files(*places: Path) -> Iterator[Path]:
    for place in places:
        if place.is_file():
            yield place
        else:
            yield from (p for p in place.rglob("*.py") if "__pycache__" not in p.parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports, at any depth (lazy imports in functions included), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def module_path(name: str) -> Path | None:
    """The file of one of our modules (``ecommerce_assets.x.y`` / ``lambdas.z``), else None."""
    if not name.startswith(("ecommerce_assets", "lambdas")):
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def is_dagster(name: str) -> bool:
    top = name.split(".")[0]
    return (top == "dagster" or top.startswith("dagster_")) and top not in DAGSTER_FREE_LIBS


def dagster_chain(start: Path) -> list[str] | None:
    """The import chain from ``start`` to a Dagster module through our modules, or None when there is none."""
    seen: set[Path] = set()
    stack: list[tuple[Path, list[str]]] = [(start, [str(start.relative_to(ROOT))])]
    while stack:
        path, chain = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        for name, line in imports_of(path):
            if is_dagster(name):
                return [*chain, f"line {line}: {name}"]
            target = module_path(name)
            if target is not None and target not in seen:
                stack.append((target, [*chain, f"line {line}: {name}"]))
    return None


@pytest.mark.parametrize("path", sorted(py_files(*NO_DAGSTER)), ids=lambda p: str(p.relative_to(ROOT)))
def test_storage_transforms_services_and_lambdas_import_no_dagster(path: Path) -> None:
    chain = dagster_chain(path)
    assert chain is None, "imports Dagster: " + " -> ".join(chain or [])


@pytest.mark.parametrize("path", sorted(py_files(PACKAGE / "spark_jobs")), ids=lambda p: str(p.relative_to(ROOT)))
def test_spark_jobs_import_only_the_standard_library_pyspark_and_pipes(path: Path) -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = [f"line {line}: {name}" for name, line in imports_of(path)
           if name.split(".")[0] not in stdlib | SPARK_JOB_LIBS | SPARK_JOB_MODULES]
    assert bad == [], "a Spark job runs alone on Spark: " + ", ".join(bad)


def _module_level_imports(path: Path) -> list[tuple[str, int]]:
    """The imports at a module's top level (not inside a function or a class)."""
    found = []
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def test_optional_dependencies_are_imported_only_where_used() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    optional = {_distribution_name(r).replace("-", "_") for extra in project["project"]["optional-dependencies"].values()
                for r in extra}
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in py_files(PACKAGE, ROOT / "lambdas")
           if PACKAGE / "spark_jobs" not in p.parents
           for name, line in _module_level_imports(p) if name.split(".")[0] in optional]
    assert bad == [], "an optional dependency imported at module level: the product would not load without it"


def test_defs_import_neither_dev_tools_nor_the_cli() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in py_files(PACKAGE / "defs")
           for name, line in imports_of(p) if name.startswith(("ecommerce_assets.dev", "ecommerce_assets.cli"))]
    assert bad == []


def test_no_private_dagster_module_is_imported() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in py_files(PACKAGE, ROOT / "lambdas", ROOT / "bench")
           for name, line in imports_of(p) if re.match(r"dagster(_\w+)?\._", name)]
    assert bad == []


def _distribution_name(requirement: str) -> str:
    return re.split(r"[\[=<>~! ;]", requirement, maxsplit=1)[0].lower()


def _imported_distributions(*places: Path) -> dict[str, set[str]]:
    """``{distribution: {module that imports it}}`` for every third-party import below ``places``."""
    by_module = importlib.metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    found: dict[str, set[str]] = {}
    for path in py_files(*places):
        for name, _line in imports_of(path):
            top = name.split(".")[0]
            if top in stdlib or top in ("ecommerce_assets", "lambdas", "tests", "bench", "__future__", *SPARK_JOB_MODULES):
                continue
            for dist in by_module.get(top, [f"<unknown module {top}>"]):
                found.setdefault(dist.lower().replace("_", "-"), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_library_is_declared_and_every_declared_one_is_used() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {_distribution_name(r).replace("_", "-") for r in project["project"]["dependencies"]}
    runtime |= {_distribution_name(r).replace("_", "-")
                for extra in project["project"].get("optional-dependencies", {}).values() for r in extra}
    dev = {_distribution_name(r).replace("_", "-") for r in project["dependency-groups"]["dev"]}
    product = _imported_distributions(PACKAGE, ROOT / "lambdas", ROOT / "definitions.py")
    undeclared = {d: sorted(m)[:3] for d, m in product.items() if d not in runtime}
    assert undeclared == {}, "imported by the product but not a declared dependency"
    unused = runtime - set(product) - set(PLUGINS)
    assert unused == set(), "declared but never imported (drop it, or name what loads it in PLUGINS)"
    tooling = _imported_distributions(ROOT / "tests", ROOT / "bench")
    undeclared_dev = {d: sorted(m)[:3] for d, m in tooling.items() if d not in runtime | dev}
    assert undeclared_dev == {}, "imported by tests/bench but not declared (dev group)"
    unused_dev = dev - set(tooling) - set(DEV_PLUGINS)
    assert unused_dev == set(), "dev dependency never imported (drop it, or name what uses it in DEV_PLUGINS)"


def graph_snapshot(data_dir: Path) -> dict:
    """The asset graph of the local environment, built in a fresh process on an empty data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECOMMERCE_", "DAGSTER_"))}
    env["ECOMMERCE_DATA_DIR"] = str(data_dir)
    out = subprocess.run([sys.executable, "-m", "tests.graph_snapshot"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout)


def test_asset_graph_matches_the_reviewed_snapshot(tmp_path: Path) -> None:
    current = graph_snapshot(tmp_path)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for part in ("assets", "checks", "sensors", "schedules", "jobs"):
        assert current[part] == expected[part], (
            f"the asset graph's {part} changed: review it, then UPDATE_SNAPSHOTS=1 pytest tests/test_architecture.py")


def test_asset_keys_follow_one_scheme() -> None:
    """``<domain>/<stage>`` for lake assets, ``<schema>/<table>`` for warehouse tables: two parts or more."""
    single = [k for k in json.loads(SNAPSHOT.read_text())["assets"] if "/" not in k]
    assert single == []
