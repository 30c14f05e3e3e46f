"""Streaming ingestion: HTTP API -> stream -> raw archive, key-value tables, ``gold.firehose_transactions``."""
