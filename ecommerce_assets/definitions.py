"""The code location: every domain's assets, checks, sensors and schedules, with the environment's resources.

Domains live in ``ecommerce_assets/defs/<domain>/`` and are discovered by ``dg.load_from_defs_folder``; the
resources are chosen once here from ``ECOMMERCE_ENV`` and offered under the same keys in both
environments.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ecommerce_assets.resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    """Load the ``defs/`` folder and bind the resources of the current environment."""
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(resources=build_resources()),
    )
