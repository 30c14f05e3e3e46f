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


_PROFILE_VARS = {  # dbt target -> the profiles.yml variables its connection reads
    "postgres": ("ECOMMERCE_PG_HOST", "ECOMMERCE_PG_PORT", "ECOMMERCE_PG_USER", "ECOMMERCE_PG_PASSWORD", "ECOMMERCE_PG_DB"),
    "redshift": ("ECOMMERCE_REDSHIFT_HOST", "ECOMMERCE_REDSHIFT_PORT", "ECOMMERCE_REDSHIFT_USER",
                 "ECOMMERCE_REDSHIFT_PASSWORD", "ECOMMERCE_REDSHIFT_DB"),
}


def dbt_connection_env(settings: Settings) -> dict[str, str]:
    """The profiles.yml connection variables of the dbt target, derived from ``ECOMMERCE_WAREHOUSE_DSN``
    so dbt writes to the very database the warehouse resource loads (one setting, not two)."""
    names = _PROFILE_VARS.get(settings.dbt_target)
    if not names or not settings.warehouse_dsn:
        return {}
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(settings.warehouse_dsn)
    values = (info.get("host"), info.get("port"), info.get("user"), info.get("password"), info.get("dbname"))
    return {name: str(value) for name, value in zip(names, values, strict=True) if value is not None}
