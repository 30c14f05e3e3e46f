# The two commands of the README are `make demo` and `make test`; the others are for development.
SHELL := /bin/bash
UV := $(shell bash scripts/ensure-uv.sh)
export UV_COMPILE_BYTECODE := 1

.PHONY: setup demo test ui bench bench-quick lint dbt-parse clean

setup:  ## install the locked dependencies into .venv (bytecode compiled), the Spark engine's PySpark included
	$(UV) sync --frozen --all-extras

demo: setup  ## land the bundled samples and run every pipeline on the local lake + DuckDB
	$(UV) run --frozen ecommerce-assets demo

dbt-parse: setup  ## build the dbt manifest the Dagster definitions load
	$(UV) run --frozen dbt parse --quiet --project-dir dbt --profiles-dir dbt

test: setup dbt-parse  ## the whole test suite (needs PostgreSQL's binaries: scripts/ensure-postgres.sh)
	bash scripts/ensure-postgres.sh
	# the unit and asset tests on two workers, then the slow ones (real daemons, full data set, timing ratios) serially
	$(UV) run --frozen pytest -n 2 --dist loadgroup -m "not slow"
	$(UV) run --frozen pytest -m slow

ui: setup  ## the Dagster UI + daemon on this project (http://127.0.0.1:3000)
	$(UV) run --frozen ecommerce-assets ui

bench: setup  ## the benchmark suite; writes bench/results/latest.{json,md}
	$(UV) run --frozen python -m bench.run

bench-quick: setup
	$(UV) run --frozen python -m bench.run --quick

lint: setup
	$(UV) run --frozen ruff check .

clean:
	rm -rf data dbt/target dbt/logs
