"""Dagster helpers every domain shares: the arrival sensor, asset metadata, check helpers, run health."""
