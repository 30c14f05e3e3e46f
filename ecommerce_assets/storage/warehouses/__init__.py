"""The warehouses: where the gold tables live and where analysts query them, one module per engine.

* ``base``: the ``Warehouse`` interface, ``quote_ident`` / ``sql_literal`` (the one place names and string
  literals enter DuckDB SQL text) and ``split_table``;
* ``duckdb``: ``DuckDBWarehouse`` (local mode) and ``file_lock``, the writers' lock of a DuckDB file;
* ``postgres``: ``PostgresWarehouse`` (psycopg 3, ``COPY FROM STDIN``) and the DSN password refusal;
* ``redshift``: ``RedshiftWarehouse`` (star-schema DISTKEY/SORTKEY, ``COPY ... FORMAT AS PARQUET MANIFEST``);
* ``athena``: ``AthenaWarehouse`` (versioned Parquet in the lake + Glue; queries through PyAthena).

Import from the engine's module; this package imports none of them, so local mode never loads psycopg
or PyAthena.
"""
