"""The dbt project's location and the ``dbt`` resource (dagster-dbt's CLI resource) for the environment.

The project lives in ``dbt/`` at the top of the repository; ``profiles.yml`` sits beside
``dbt_project.yml``. The target is ``Settings.dbt_target``: ``duckdb`` locally (the warehouse file),
else the warehouse kind (postgres|redshift|athena). The ``dbt`` executable is the one installed beside
the running Python (the project's venv), so it works without an activated venv.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ecommerce_assets.settings import Settings

if TYPE_CHECKING:
    from dagster_dbt import DbtCliResource

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt"


def dbt_executable() -> str:
    """The ``dbt`` of the running interpreter's environment (beside ``sys.executable``, else in
    ``sys.prefix/bin``), never looked up on PATH first: ``.venv/bin/ecommerce-assets ui`` works from a shell
    whose PATH lacks the venv. PATH is the last resort (a dbt installed elsewhere)."""
    for candidate in (Path(sys.executable).parent / "dbt", Path(sys.prefix) / "bin" / "dbt"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("dbt") or "dbt"


def dbt_environment() -> str:
    """The dbt environment the product's own dbt runs use (``ECOMMERCE_DBT_ENV``, default ``prod``).

    It names the schemas (``marts`` in prod, ``<env>_marts`` otherwise; ``dbt/macros/generate_schema_name.sql``)
    and, in prod, leaves the dbt unit tests out of the builds. dbt run by hand defaults to ``dev``."""
    return (os.environ.get("ECOMMERCE_DBT_ENV") or "prod").strip().lower()


def build_dbt_resource(settings: Settings) -> DbtCliResource:
    """dagster-dbt's CLI resource over ``dbt/`` for the settings' target (dagster-dbt imported here: only
    definitions that hold the dbt assets pay for it)."""
    from dagster_dbt import DbtCliResource

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
    so dbt writes to the very database the warehouse resource loads (one setting, not two).

    The password never comes from the DSN (a DSN with one is refused, as the warehouse resource refuses
    it: Dagster would store it in its run snapshots): it is ``PGPASSWORD`` from the environment, which
    libpq reads for the warehouse resource too. Without ``PGPASSWORD`` the profile's password is empty
    and libpq falls back to ``~/.pgpass``."""
    names = _PROFILE_VARS.get(settings.dbt_target)
    if not names or not settings.warehouse_dsn:
        return {}
    import os

    from psycopg.conninfo import conninfo_to_dict

    from ecommerce_assets.storage.warehouses.postgres import (
        DSN_PASSWORD_REFUSED,
        DsnPasswordError,
        dsn_has_password,
    )

    if dsn_has_password(settings.warehouse_dsn):
        raise DsnPasswordError(DSN_PASSWORD_REFUSED)
    info = conninfo_to_dict(settings.warehouse_dsn)
    password = os.environ.get("PGPASSWORD") or None
    values = (info.get("host"), info.get("port"), info.get("user"), password, info.get("dbname"))
    return {name: str(value) for name, value in zip(names, values, strict=True) if value is not None}
