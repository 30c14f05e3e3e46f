"""The base of every storage class: a validated, immutable settings holder (pydantic, no Dagster)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StorageModel(BaseModel):
    """Fields are the object's settings; they are checked when it is built and never change after."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class StorageSettingError(ValueError):
    """A setting the storage needs is missing or wrong; the message names it."""
