"""The benchmark suite: every heavy path, product vs pandas vs the DuckDB floor (``python -m bench.run``)."""
