"""The lakehouse: upkeep of the processed zone's Iceberg tables (every pipeline's), weekly."""
