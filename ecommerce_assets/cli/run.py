"""Catch up, headless (for cron, CI and scripts): do once what the schedules (with --fetch) and the sensors
would do, then materialize everything downstream of what landed, partitions included.

Prints one line per run (its assets, row counts and time), one line per pipeline skipped saying what turns
it on, then a summary. Dagster's event logs stay in the instance (DAGSTER_HOME, default
<ECOMMERCE_DATA_DIR>/dagster_home) and show in the UI; --verbose prints them too. Exits 0 when everything
configured succeeded, 1 when a run or a sensor failed, 2 on invalid settings.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator

from ecommerce_assets.pipelines import PIPELINE_NAMES

NAME = "run"
HELP = "catch up headless: fetch (--fetch), process everything that has landed, then everything downstream"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fetch", action="store_true",
                        help="first do what the API schedules do: every configured seller's catalog, the products API")
    parser.add_argument("--pipeline", action="append", choices=PIPELINE_NAMES, metavar="NAME", default=None,
                        help=f"limit the catch-up to this pipeline (repeatable): {', '.join(PIPELINE_NAMES)}")
    parser.add_argument("--verbose", action="store_true", help="also print Dagster's event logs")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--profile", action="store_true",
                        help="after the summary, print where the time went: each phase (definitions load, runs, the "
                             "rest of the catch-up) and the functions with the most cumulative time")


def storage_failure(exc: BaseException) -> str:
    """One line for a failure of the Dagster instance or the data dir, naming a full disk when it is one."""
    import shutil

    from ecommerce_assets.settings import get_settings

    settings = get_settings()
    places = {"DAGSTER_HOME": settings.dagster_home_dir, "data dir": settings.data_dir}
    full = []
    for name, path in places.items():
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue
        if usage.free < 1 << 20:
            full.append(f"{name} {path} ({usage.free // 1024} KB free)")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if full:
        return f"no space left on device: {'; '.join(full)}; free some space and run again ({first})"
    return f"the run stopped: {type(exc).__name__}: {first}"


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.runtime.catchup import catch_up, load_definitions, plan_catch_up
    from ecommerce_assets.runtime.summary import print_summary, startup_problems, startup_warnings

    start = time.monotonic()
    problems = startup_problems()
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    for line in startup_warnings():
        print(f"warning: {line}")
    profile = Profile(enabled=args.profile)
    try:
        with profile.phase("legacy layout check (plain Parquet before Iceberg)"):
            migrate_legacy_layout()
        with profile.phase("landing checks (which pipelines have anything new)"):
            plan = plan_catch_up(args.pipeline, args.fetch)
        with profile.phase(f"definitions load ({', '.join(plan.load) or 'no pipeline'})"):
            defs = load_definitions(plan.load)
        with profile.phase("catch-up"):
            report = catch_up(
                defs, echo=(lambda _msg: None) if args.quiet else print, fetch=args.fetch,
                pipelines=args.pipeline, verbose=args.verbose, plan=plan,
            )
    except Exception as exc:  # the instance or the data dir itself failed (a full disk, an I/O error): one line
        print(f"error: {storage_failure(exc)}", file=sys.stderr)
        return 1
    if not report.runs and not report.failures:
        done = f" ({report.skipped_run_keys} batch(es) already processed)" if report.skipped_run_keys else ""
        print(f"nothing new to process{done}")
    print_summary(report, time.monotonic() - start)
    if args.profile:
        profile.print(time.monotonic() - start, sum(line.seconds for line in report.lines), len(report.lines))
    return 0 if report.ok else 1


def migrate_legacy_layout() -> None:
    """On the first run over a data dir written before the processed zone became Iceberg tables: convert its plain
    Parquet partitions into the tables, counts checked (``storage.migration``), one line per table."""
    from ecommerce_assets.settings import get_settings
    from ecommerce_assets.storage.lakes import build_lake
    from ecommerce_assets.storage.migration import migrate, pending

    settings = get_settings()
    lake = build_lake(settings)
    if not any(pending(lake)):
        return
    from ecommerce_assets.storage.iceberg import build_iceberg

    print("migrating the processed zone's plain Parquet into Iceberg tables (once)")
    migrate(lake, build_iceberg(settings), log=lambda line: print(f"  migrated {line}"))


class Profile:
    """``--profile``: wall time per phase, and cProfile's view of the whole catch-up (off: no overhead)."""

    TOP = 20

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.phases: dict[str, float] = {}
        self.started = time.monotonic()
        self.profiler = None
        if enabled:
            import cProfile

            self.profiler = cProfile.Profile()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        if self.profiler is not None:
            self.profiler.enable()
        try:
            yield
        finally:
            if self.profiler is not None:
                self.profiler.disable()
            self.phases[name] = time.monotonic() - began

    def print(self, total: float, run_seconds: float, runs: int) -> None:
        """The phases (the catch-up split into its runs and the rest: sensor ticks, checks, waits), then the
        product's functions (assets, transforms, storage) with the most cumulative time."""
        import io
        import pstats

        print(f"\nprofile: {total:.2f} s in all (times under cProfile, which slows Python code)")
        rows = dict(self.phases)
        rows["before: settings, warnings"] = total - sum(self.phases.values())
        catch_up = rows.pop("catch-up", 0.0)
        rows[f"runs ({runs})"] = run_seconds
        rows["rest of the catch-up: sensor ticks, checks, instance"] = max(0.0, catch_up - run_seconds)
        for name, seconds in rows.items():
            print(f"  {seconds:7.2f} s  {seconds / total if total else 0:4.0%}  {name}")
        if self.profiler is None:
            return
        out = io.StringIO()
        stats = pstats.Stats(self.profiler, stream=out).sort_stats("cumulative")
        stats.print_stats(r"ecommerce_assets/(defs|transforms|storage|lib|runtime)", self.TOP)
        print("  top functions by cumulative time:")
        for line in out.getvalue().splitlines():
            if line.strip() and (line.lstrip()[:1].isdigit() or line.lstrip().startswith("ncalls")):
                print("  " + line)
