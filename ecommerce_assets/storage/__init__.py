"""Storage: the lake (a folder or S3), the stream, the key-value store, the warehouses and the table
catalogs, as plain classes with no Dagster import.

Dagster receives them as resources under fixed keys (``ecommerce_assets.resources.build_resources``); the
Lambda handlers build the same objects with ``build_storage`` and need neither Dagster nor dbt.
"""
