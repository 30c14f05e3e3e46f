"""The dbt project's location and the ``dbt`` resource (dagster-dbt's CLI resource) for the environment.

The project lives in ``dbt/`` at the top of the repository; ``profiles.yml`` sits beside
``dbt_project.yml``. The target is ``Settings.dbt_target``: ``duckdb`` locally (the warehouse file),
else the warehouse kind (postgres|redshift|athena). The ``dbt`` executable is the one installed beside
the running Python (the project's venv), so it works without an activated venv.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource

from ecommerce_assets.settings import Settings

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt"


def dbt_executable() -> str:
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def build_dbt_resource(settings: Settings) -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        target=settings.dbt_target,
        dbt_executable=dbt_executable(),
    )
