"""Event-driven transactions: generator, arrival sensor, daily-partitioned Parquet, catalog, seven analytics."""
