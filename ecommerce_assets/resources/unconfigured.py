"""A resource whose settings are missing: it fails only in the step that uses it, naming the setting.

``build_resources`` binds one under the resource's key instead of failing the whole code location,
so that a retail-only deployment needs only the lake and warehouse settings, and ``doctor`` and the
catch-up can say which setting turns a pipeline on.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class MissingSettingError(AttributeError):
    """A step used a resource whose settings are not given (an AttributeError: the placeholder has none of
    the real resource's methods, and probing it with ``hasattr`` says so without raising)."""


class UnconfiguredResource(dg.ConfigurableResource):
    """Stands in for a resource that is not configured; using it raises ``MissingSettingError``."""

    resource_key: str = Field(description="the resource key this stands in for")
    problem: str = Field(description="what is missing, naming the setting that fixes it")

    def __getattr__(self, name: str):  # only for names the model does not have: the real resource's API
        if name.startswith("_"):
            return super().__getattr__(name)  # type: ignore[misc]
        raise MissingSettingError(f"resource '{self.resource_key}' is not configured: {self.problem}")


def unconfigured(resources: dict[str, object]) -> dict[str, str]:
    """``{resource key: problem}`` for every placeholder among ``resources``."""
    return {k: r.problem for k, r in resources.items() if isinstance(r, UnconfiguredResource)}
