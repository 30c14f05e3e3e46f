"""Processes the product runs beside the graph, with no Dagster import: the stream's ingestion API and the
transactions generator (also used by its schedule and its Lambda)."""
