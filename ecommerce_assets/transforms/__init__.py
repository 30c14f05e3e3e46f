"""Pure DuckDB/Arrow transforms shared by the Dagster assets, the CLI and the Lambda handlers."""
