"""The code location: every domain's assets, checks, sensors and schedules, with the environment's resources.

Domains live in ``ecommerce_assets/defs/<domain>/`` and are discovered by ``dg.load_defs``; the
resources are chosen once here from ``ECOMMERCE_ENV`` and offered under the same keys in both
environments.
"""

from __future__ import annotations

import dagster as dg

import ecommerce_assets.defs as defs_root
from ecommerce_assets.resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    """Load the ``defs/`` folder and bind the resources of the current environment."""
    return dg.Definitions.merge(dg.load_defs(defs_root=defs_root), dg.Definitions(resources=build_resources()))
