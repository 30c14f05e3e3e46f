"""The benchmark suite: ``.venv/bin/python -m bench.run [--quick] [--only NAME ...] [--runs N] [--engines]``.

Every measurement runs in a fresh Python process (``bench.worker``); its wall time is the timed work
inside the process (after imports and input preparation) and its peak memory is that process's maximum
resident set (``os.wait4``: the child and anything it waited for). Implementations of one path are
interleaved run by run (the order rotates every round) and each figure is the median of ``runs`` runs
with the min-max. Results: ``bench/results/latest.json`` and the table ``bench/results/latest.md``.

Inputs are generated (seeded) or copied once into ``$ECOMMERCE_BENCH_CACHE`` (default
``/tmp/ecommerce-bench-cache``); path 1 needs ``../shared/data/online_retail/online_retail.csv.gz`` and is
skipped with a message when it is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import CACHE, RESULTS, ROOT, SHARED_RETAIL

PANDAS_MEMORY_LIMIT_GB = 10  # the address-space cap for pandas runs (the machine has no swap to fall into)


@dataclass
class Case:
    group: str  # the interleaving unit: implementations of one path at one size
    impl: str
    target: str
    params: dict = field(default_factory=dict)
    runs: int | None = None  # None: the suite's --runs
    timeout: float = 900.0
    inputs: str | None = None  # the group's input under the cache, read once before its first run (see ``warm``)


def cases(quick: bool) -> list[Case]:
    pandas = {"memory_limit_gb": PANDAS_MEMORY_LIMIT_GB}
    out: list[Case] = []

    def trio(group: str, module: str, params: dict, pandas_runs: int | None = None) -> None:
        out.append(Case(group, "product", f"bench.{module}:product", params))
        out.append(Case(group, "floor", f"bench.{module}:floor", params))
        out.append(Case(group, "pandas", f"bench.{module}:pandas_impl", {**params, **pandas}, runs=pandas_runs))

    out.append(Case("0 definitions load", "all pipelines", "bench.overhead:definitions_load", {}))
    out.append(Case("0 definitions load", "one pipeline (retail)", "bench.overhead:definitions_load",
                    {"pipelines": "retail"}))
    out.append(Case("1 retail e2e 1x", "product", "bench.retail_e2e:product", {"scale": "1x"}))
    out.append(Case("1 retail e2e 1x", "floor", "bench.retail_e2e:floor", {"scale": "1x"}))
    if not quick:
        # 10x: where the engine's time dominates; two runs each (a run is a minute), no pandas (it does not fit)
        out.append(Case("1 retail e2e 10x", "product", "bench.retail_e2e:product", {"scale": "10x"}, runs=2,
                        inputs="online_retail_10x.csv"))
        out.append(Case("1 retail e2e 10x", "floor", "bench.retail_e2e:floor", {"scale": "10x"}, runs=2))
    trio("1 retail full", "retail", {"size": "full"})
    if quick:
        trio("2 transactions 100k", "transactions", {"size": "100k"})
    else:
        trio("2 transactions 1m", "transactions", {"size": "1m"})
        out.append(Case("2 transactions 1m", "floor per partition", "bench.transactions:floor_per_partition",
                        {"size": "1m"}))
        # pandas is capped at 1m: at 10m it needs more than the machine's memory (measured once: out of memory
        # at 10 GB), so the 10m comparison is the product against the floor
        out.append(Case("2 transactions 10m", "product", "bench.transactions:product", {"size": "10m"}, runs=2,
                        inputs="transactions_10m"))
        out.append(Case("2 transactions 10m", "floor", "bench.transactions:floor", {"size": "10m"}, runs=2))
        out.append(Case("2 transactions 10m", "floor per partition", "bench.transactions:floor_per_partition",
                        {"size": "10m"}, runs=2))
    files = 200 if quick else 1000
    out.append(Case("3 small files", "batched", "bench.small_files:batched", {"files": files}))
    # one run each of the slow baselines (a minute apiece): they show an order of magnitude, not a close ratio
    out.append(Case("3 small files", "per_call", "bench.small_files:per_call", {"files": files}, runs=1))
    out.append(Case("3 small files", "per_process", "bench.small_files:per_process",
                    {"files": files, "sample": 1 if quick else 3}))
    objects = 10_000 if quick else 100_000
    out.append(Case("4 sensor tick", "local", "bench.sensor:local", {"objects": objects, "dates": 100}, runs=1))
    out.append(Case("4 sensor tick", "s3 (moto)", "bench.sensor:s3", {"objects": 5_000 if quick else 100_000, "dates": 100},
                    runs=1))
    out.append(Case("5 matching 100k x 100k" if not quick else "5 matching 20k x 20k", "product",
                    "bench.matching:product", {"size": "20k" if quick else "100k"}))
    if not quick:
        out.append(Case("5 matching 480k x 1m", "product", "bench.matching:product", {"size": "480k_1m"},
                        inputs="matching_480k_1m"))
    out.append(Case("6 overhead", "one_asset", "bench.overhead:one_asset", {}))
    if not quick:
        out.append(Case("6 overhead", "demo", "bench.overhead:demo", {}, runs=1))
    return out


def engine_cases() -> list[Case]:
    """``--engines``: the Online Retail cleaning (1x, 10x and 30x the data set) and the transactions (1 M and 10 M
    records) on each engine (``ECOMMERCE_ENGINE``), end to end through ``ecommerce-assets run`` on a fresh data dir:
    where Spark starts to pay."""
    out = []
    for scale in ("1x", "10x", "30x"):
        for engine in ("duckdb", "spark"):
            out.append(Case(f"7 engines retail {scale}", engine, "bench.retail_e2e:product",
                            {"scale": scale, "engine": engine}, runs=None if scale == "1x" else 1, timeout=3600,
                            inputs=None if scale == "1x" else f"online_retail_{scale}.csv"))
    for size in ("1m", "10m"):
        for engine in ("duckdb", "spark"):
            out.append(Case(f"8 engines transactions {size}", engine, "bench.transactions:product_e2e",
                            {"size": size, "engine": engine}, runs=None if size == "1m" else 1, timeout=3600,
                            inputs=f"transactions_{size}"))
    return out


PREPARE = {
    "bench.retail": "from bench import retail; retail.prepare('{size}')",
    "bench.retail_e2e": "from bench import retail_e2e; retail_e2e.prepare('{scale}')",
    "bench.transactions": "from bench import transactions; transactions.prepare('{size}')",
    "bench.small_files": "from bench import small_files; small_files.prepare({files})",
    "bench.matching": "from bench import matching; matching.generate('{size}')",
}


def warm(inputs: str) -> None:
    """Read a group's input files once, unmeasured, so that its first run does not pay for reading them from
    disk while the others find them in the page cache (the inputs of paths 1e 10x, 2 10m and 5 480k are GBs)."""
    root = CACHE / inputs
    for path in sorted(root.rglob("*") if root.is_dir() else [root]):
        if path.is_file():
            with path.open("rb") as fh:
                while fh.read(1 << 24):
                    pass


def measure(case: Case, logs: Path) -> dict:
    """One run of ``case`` in a fresh process: the worker's result + its wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-result-") as tmp:
        result_path = Path(tmp) / "result.json"
        log = logs / f"{case.group}-{case.impl}.log".replace(" ", "_")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DUCKDB_NO_PROGRESS_BAR": "1"}
        with log.open("a") as fh:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.worker", case.target, json.dumps(case.params), str(result_path)],
                cwd=str(ROOT), env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )
            status, rusage, timed_out = 0, None, False
            while True:
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - start > case.timeout:
                    os.killpg(proc.pid, 9)
                    _, status, rusage = os.wait4(proc.pid, 0)
                    timed_out = True
                    break
                time.sleep(0.05)
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - start
        if timed_out:
            out = {"ok": False, "error": f"failed: timed out after {case.timeout:.0f} s"}
        elif result_path.exists():
            out = json.loads(result_path.read_text())
        else:
            code = proc.returncode
            killed = code < 0 and -code == 9
            out = {"ok": False, "error": "failed: killed (out of memory?)" if killed else f"failed: exit code {code}"}
        out["process_wall_seconds"] = wall
        out["peak_rss_mb"] = rusage.ru_maxrss / 1024 if rusage else None
        return out


def _stats(values: list[float]) -> dict | None:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None


def summarize(case: Case, runs: list[dict]) -> dict:
    ok = [r for r in runs if r.get("ok")]
    return {
        "group": case.group, "impl": case.impl, "target": case.target, "params": case.params,
        "runs": len(runs), "ok_runs": len(ok),
        "seconds": _stats([r["seconds"] for r in ok]),
        "peak_rss_mb": _stats([r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb")]),
        "errors": sorted({r["error"] for r in runs if not r.get("ok")}),
        "last": {k: v for k, v in (ok or runs)[-1].items() if k not in ("traceback",)},
    }


def _get(results: list[dict], group: str, impl: str, key: str = "seconds") -> float | None:
    for r in results:
        if r["group"] == group and r["impl"] == impl and r[key]:
            return r[key]["median"]
    return None


def _last(results: list[dict], group: str, impl: str, key: str) -> float | None:
    for r in results:
        if r["group"] == group and r["impl"] == impl and r["ok_runs"]:
            return r["last"].get(key)
    return None


def targets(results: list[dict]) -> list[dict]:
    """Each target (issues 8 and 14) with the measured figure and whether it holds."""
    out: list[dict] = []

    def add(name: str, value: float | None, bound: float, kind: str, unit: str = "") -> None:
        if value is None:
            out.append({"target": name, "value": None, "bound": bound, "holds": None, "margin": "not measured"})
            return
        holds = value <= bound if kind == "max" else value >= bound
        # how far from the bound, as a factor >= 1 either way
        factor = (bound / value if holds else value / bound) if kind == "max" else \
            (value / bound if holds else bound / value)
        out.append({"target": name, "value": round(value, 3), "bound": round(bound, 3), "holds": holds, "unit": unit,
                    "margin": f"{'holds' if holds else 'misses'} by {factor:.2f}x"})

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    g = _get
    # issue 14: what a user waits for
    add("definitions load, every pipeline: s over import dagster", g(results, "0 definitions load", "all pipelines"),
        1.5, "max", "s")
    add("definitions load, one pipeline (retail): s over import dagster",
        g(results, "0 definitions load", "one pipeline (retail)"), 1.5, "max", "s")
    add("retail end to end 1x: product / floor (time)",
        ratio(g(results, "1 retail e2e 1x", "product"), g(results, "1 retail e2e 1x", "floor")), 2.5, "max")
    add("retail end to end 10x: product / floor (time)",
        ratio(g(results, "1 retail e2e 10x", "product"), g(results, "1 retail e2e 10x", "floor")), 1.3, "max")
    r10 = g(results, "1 retail e2e 10x", "product", "peak_rss_mb")
    add("retail end to end 10x: product peak memory (GB)", r10 / 1024 if r10 else None, 1.5, "max", "GB")
    add("path 1 full: product / floor (time)", ratio(g(results, "1 retail full", "product"), g(results, "1 retail full", "floor")), 1.3, "max")
    add("path 1 full: pandas / product (time)", ratio(g(results, "1 retail full", "pandas"), g(results, "1 retail full", "product")), 1.5, "min")
    for size in ("1m", "10m"):
        grp = f"2 transactions {size}"
        add(f"path 2 {size}: product / floor (time)", ratio(g(results, grp, "product"), g(results, grp, "floor")), 1.3, "max")
    for size in ("1m", "10m"):
        grp = f"2 transactions {size}"
        add(f"path 2 {size}: product / floor run once per date (time, as the asset runs)",
            ratio(g(results, grp, "product"), g(results, grp, "floor per partition")), 1.3, "max")
    add("path 2 1m: pandas / product (time)", ratio(g(results, "2 transactions 1m", "pandas"), g(results, "2 transactions 1m", "product")), 3.0, "min")
    add("path 2 1m: product / pandas (peak memory)",
        ratio(g(results, "2 transactions 1m", "product", "peak_rss_mb"), g(results, "2 transactions 1m", "pandas", "peak_rss_mb")), 1 / 3, "max")
    t10 = g(results, "2 transactions 10m", "product")
    add("path 2 10m: product rows/s (M)", 10.0 / t10 if t10 else None, 0.3, "min", "M rows/s")
    m10 = g(results, "2 transactions 10m", "product", "peak_rss_mb")
    add("path 2 10m: product peak memory (GB)", m10 / 1024 if m10 else None, 1.5, "max", "GB")
    t1 = g(results, "2 transactions 1m", "product")
    add("path 2 product 1m -> 10m growth (time x, linear = 10)", ratio(t10, t1), 12.0, "max")
    add("path 3: per_process / batched", ratio(g(results, "3 small files", "per_process"), g(results, "3 small files", "batched")), 100, "min")
    add("path 3: per_call / batched", ratio(g(results, "3 small files", "per_call"), g(results, "3 small files", "batched")), 5, "min")
    add("path 4 local: first tick on 100k objects (s)", g(results, "4 sensor tick", "local"), 5.0, "max", "s")
    add("path 4 local: next tick (s)", _last(results, "4 sensor tick", "local", "next_tick_seconds"), 1.0, "max", "s")
    add("path 4 s3 (moto): first tick on 100k objects (s)", g(results, "4 sensor tick", "s3 (moto)"), 5.0, "max", "s")
    add("path 4 s3 (moto): next tick (s)", _last(results, "4 sensor tick", "s3 (moto)", "next_tick_seconds"), 5.0, "max", "s")
    add("path 5: 100k x 100k (s)", g(results, "5 matching 100k x 100k", "product"), 5.0, "max", "s")
    add("path 5: 480k x 1M, all in (s)", g(results, "5 matching 480k x 1m", "product"), 15.0, "max", "s")
    return out


def _fmt_s(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def _fmt_mb(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})"


def markdown(doc: dict) -> str:
    lines = [
        f"Benchmark run {doc['started']} on {doc['machine']} ({doc['cpus']} CPUs), "
        f"{'quick' if doc['quick'] else 'full'} suite, {doc['runs']} run(s) per figure, total {doc['total_seconds']:.0f} s.",
        "",
        "| path | implementation | wall s, median (min-max) | peak RSS MB, median (min-max) | runs ok | notes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["results"]:
        notes = "; ".join(r["errors"])
        last = r["last"]
        extra = []
        for key in ("rows_out", "rows_per_second", "first_tick_seconds", "next_tick_seconds", "idle_tick_seconds",
                    "matched", "candidate_pairs", "note", "share_startup", "share_our_step", "share_our_steps",
                    "share_dagster_run", "share_other", "dagster_import_seconds", "definitions_load_seconds"):
            if key in last and r["ok_runs"]:
                v = last[key]
                extra.append(f"{key}={v:,.2f}" if isinstance(v, float) else f"{key}={v}")
        notes = "; ".join(x for x in (notes, ", ".join(extra)) if x)
        lines.append(f"| {r['group']} | {r['impl']} | {_fmt_s(r['seconds'])} | {_fmt_mb(r['peak_rss_mb'])} | "
                     f"{r['ok_runs']}/{r['runs']} | {notes} |")
    if doc["targets"]:
        lines += ["", "| target | measured | bound | holds |", "| --- | --- | --- | --- |"]
    for t in doc["targets"]:
        holds = "n/a" if t["holds"] is None else ("yes" if t["holds"] else "**no**")
        lines.append(f"| {t['target']} | {t['value'] if t['value'] is not None else '-'} | {t['bound']:g} | "
                     f"{holds} ({t['margin']}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, one run each (under 2 minutes)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only the groups whose name contains one of these words (e.g. retail, 10m, sensor)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3, --quick 1)")
    parser.add_argument("--output", default=None,
                        help="results path without extension (default bench/results/latest, with --engines engines)")
    parser.add_argument("--engines", action="store_true",
                        help="instead of the suite: the retail cleaning (1x/10x/30x) and the transactions (1 M, 10 M) "
                             "on DuckDB and on local Spark")
    args = parser.parse_args(argv)
    args.output = args.output or str(RESULTS / ("engines" if args.engines else "latest"))
    runs = args.runs or (1 if args.quick else 3)
    every = engine_cases() if args.engines else cases(args.quick)
    selected = [c for c in every if not args.only or any(w.lower() in c.group.lower() for w in args.only)]
    if not SHARED_RETAIL.exists():
        print(f"skipping path 1: the Online Retail data set is missing ({SHARED_RETAIL})")
        selected = [c for c in selected if not c.group.startswith("1 ")]
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    groups: dict[str, list[Case]] = {}
    for c in selected:
        groups.setdefault(c.group, []).append(c)
    collected: dict[int, list[dict]] = {id(c): [] for c in selected}
    # inputs are made once, before any measurement (not inside a measured process)
    prep = sorted({PREPARE[c.target.split(":")[0]].format(**c.params) for c in selected if c.target.split(":")[0] in PREPARE})
    # the product's bytecode too, as an installed product has it after its first run: a process that compiles
    # the package's sources (PYTHONDONTWRITEBYTECODE, or sources newer than their .pyc) would time the compiler
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "ecommerce_assets"), str(ROOT / "lambdas")],
                   check=True)
    for code in prep:
        print(f"preparing inputs: {code}", flush=True)
        subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    for group, members in groups.items():
        rounds = max((c.runs or runs) for c in members)
        for inputs in sorted({c.inputs for c in members if c.inputs}):
            warm(inputs)
        for i in range(rounds):
            order = members[i % len(members):] + members[: i % len(members)]  # rotate: interleaved, fair
            for c in order:
                if len(collected[id(c)]) >= (c.runs or runs):
                    continue
                r = measure(c, logs)
                collected[id(c)].append(r)
                status = f"{r['seconds']:.2f} s" if r.get("ok") else r["error"]
                print(f"[{time.perf_counter() - t0:6.0f}s] {group} / {c.impl} run {i + 1}: {status}, "
                      f"peak {r['peak_rss_mb'] or 0:.0f} MB", flush=True)
    results = [summarize(c, collected[id(c)]) for c in selected]
    doc = {
        "started": started, "quick": args.quick, "runs": runs, "machine": platform.platform(),
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "total_seconds": time.perf_counter() - t0,
        "load_average_at_end": os.getloadavg(),
        "results": results, "targets": [] if args.engines else targets(results),
    }
    if not args.quick and not args.only and not args.engines:
        total = doc["total_seconds"] / 60
        doc["targets"].append({"target": "full bench (min)", "value": round(total, 1), "bound": 15, "holds": total <= 15,
                               "unit": "min", "margin": f"{'holds' if total <= 15 else 'misses'} by "
                                                       f"{max(total / 15, 15 / total):.2f}x"})
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str))
    out.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))
    print(f"written: {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0 if all(r["ok_runs"] or r["impl"] == "pandas" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
