"""A full disk in the middle of a write: ``ecommerce-assets run`` must stop with one clear line naming the
problem and the path, and leave the previous data whole.

The data dir (lake, DuckDB warehouse, Dagster instance: everything of local mode on one disk) is a small
tmpfs, mounted without root in a user + mount namespace of its own (``unshare --user --map-root-user
--mount``; as root where user namespaces are refused, ``unshare --mount``). The tmpfs vanishes with the
namespace, so the whole scenario runs inside it, as one shell script:

1. the 5,000-line Online Retail sample lands, ``run`` (must exit 0); the figures are taken
   (``python -m tests.fault_probes check``, written as JSON outside the tmpfs);
2. the full data set (524,878 lines) lands and the tmpfs is shrunk (``mount -o remount,size=``) to what it
   holds plus a headroom chosen so that the disk fills in the write under test: the raw copy of the landed
   file, the cleaned Iceberg table's data files, the gold Parquet, or the gold load into the DuckDB warehouse. ``run`` again:
   it must exit non-zero, print no traceback, and print one line that says "No space left on device" and
   names a path on the tmpfs. The figures are taken again: every Parquet file readable, the warehouse
   readable, no in-flight file left taking space, and each unit of the pipeline (the cleaned zone, each gold
   Parquet file, the quarantine, each ``gold.*`` table) either exactly as the first run left it or exactly
   as an uninterrupted run on the full data leaves it; the table whose load failed (and, when the raw copy or
   the cleaned write failed, everything) as the first run left it;
3. the tmpfs is given room again and ``run`` once more: exit 0, every figure equal to the uninterrupted run's.

The headrooms come from an uninterrupted run of the same two steps on the ordinary disk (the sizes its raw,
cleaned and gold files take on a tmpfs).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import faults
from tests.conftest import FULL_RETAIL, RETAIL_SAMPLE_5000
from tests.daemon import ROOT
from tests.fault_probes import local_units, tmpfs_kib

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOMY_KIB = 256 * 1024  # the tmpfs before and after the full disk
NO_SPACE = re.compile(r"no space left on device", re.IGNORECASE)

SCRIPT = r"""
set -u
mount -t tmpfs -o size=${ROOMY_KIB}k tmpfs "$MNT" || { echo "mount: tmpfs on $MNT failed" >&2; exit 90; }
landing="$DATA/lake/landing/online_retail"
mkdir -p "$landing" && cp "$SMALL" "$landing/" || exit 91
"$CLI" run >"$OUT/run1.out" 2>"$OUT/run1.err"; echo $? >"$OUT/run1.rc"
"$PY" -m tests.fault_probes check "$DATA" "$OUT/first.json"
cp "$BIG" "$landing/" || exit 92
used=$(df -k --output=used "$MNT" | tail -n 1)
mount -o remount,size=$((used + HEADROOM_KIB))k tmpfs "$MNT" || exit 93
"$CLI" run >"$OUT/run2.out" 2>"$OUT/run2.err"; echo $? >"$OUT/run2.rc"
df -k --output=size,used,avail "$MNT" | tail -n 1 >"$OUT/df.txt"
"$PY" -m tests.fault_probes check "$DATA" "$OUT/after_full.json"
mount -o remount,size=${ROOMY_KIB}k tmpfs "$MNT" || exit 94
"$CLI" run >"$OUT/run3.out" 2>"$OUT/run3.err"; echo $? >"$OUT/run3.rc"
"$PY" -m tests.fault_probes check "$DATA" "$OUT/recovered.json"
"""


@dataclass
class Outcome:
    """What one scenario left outside the namespace: each run's exit code and output, each check's JSON."""

    out: Path

    def rc(self, run: int) -> int:
        return int((self.out / f"run{run}.rc").read_text())

    def console(self, run: int) -> str:
        return (self.out / f"run{run}.out").read_text(errors="replace") + (self.out / f"run{run}.err").read_text(
            errors="replace"
        )

    def check(self, name: str) -> dict[str, Any]:
        return json.loads((self.out / f"{name}.json").read_text())


UNSHARE = (["unshare", "--user", "--map-root-user", "--mount"], ["unshare", "--mount"])


def namespace_command(script: str, unshare: list[str]) -> list[str]:
    """``script`` run by ``sh`` in a new mount namespace (``unshare``)."""
    return [*unshare, "sh", "-c", script]


@pytest.fixture(scope="module")
def unshare() -> list[str]:
    """How a tmpfs gets mounted here without touching the machine's mounts: a user + mount namespace (no root
    needed), else, as root, a mount namespace alone (a container may refuse user namespaces). The test fails,
    saying why, when neither works."""
    tried = []
    for command in UNSHARE:
        probe = subprocess.run(
            namespace_command("mount -t tmpfs -o size=1m tmpfs /mnt && df -k /mnt", command),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if probe.returncode == 0:
            return command
        tried.append(f"{' '.join(command)}: {probe.stderr.strip()}")
    raise AssertionError("cannot mount a tmpfs in a namespace of its own:\n" + "\n".join(tried))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The two runs on the ordinary disk, uninterrupted: the figures and units after each, and the sizes the
    full data set's raw, cleaned and gold files take on a tmpfs (KiB)."""
    data_dir = tmp_path_factory.mktemp("reference") / "data"
    landing = data_dir / "lake" / "landing" / "online_retail"
    landing.mkdir(parents=True)
    env = faults.cli_env(data_dir)
    out: dict[str, Any] = {}
    for step, source in (("first", RETAIL_SAMPLE_5000), ("final", FULL_RETAIL)):
        shutil.copy(source, landing)
        run = faults.run(env, "run", timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        out[step] = {"figures": faults.figures(data_dir), "units": local_units(data_dir)}
    processed = data_dir / "lake" / "processed" / "online_retail"
    out["kib"] = {
        "raw": math.ceil(FULL_RETAIL.stat().st_size / 4096) * 4,  # the raw copy is the landed bytes
        # the cleaned Iceberg table's data files at its current snapshot (the full data set's rows)
        "cleaned": sum(math.ceil(p.stat().st_size / 4096) * 4
                       for p in faults.iceberg_tables(data_dir)["online_retail_cleaned"].data_files),
        "quarantine": tmpfs_kib(data_dir / "lake" / "quarantine" / "online_retail"),
        "gold": tmpfs_kib(processed / "gold"),
        "sales": math.ceil((processed / "gold" / "sales_transactions.parquet").stat().st_size / 4096) * 4,
    }
    return out


# what the two small gold tables' loads into the warehouse and the run's events take before the fact table is
# written (KiB): measured at 300-1,200 on this machine; the fact table's Parquet (2.5 MB) and load (6 MB) are larger
SMALL_WRITES_KIB = 1536
# headroom after the full data set has landed (KiB): what the run writes before the write under test, then part
# of that write
HEADROOMS = {
    "raw copy": lambda k: k["raw"] // 2,
    "cleaned Parquet": lambda k: k["raw"] + k["cleaned"] // 3,
    "gold Parquet": lambda k: (k["raw"] + k["cleaned"] + k["quarantine"] + (k["gold"] - k["sales"])
                               + SMALL_WRITES_KIB + k["sales"] // 3),
    "warehouse load": lambda k: k["raw"] + k["cleaned"] + k["quarantine"] + k["gold"] + SMALL_WRITES_KIB + 1800,
}
# the step whose error the failed run must name, per scenario (the warehouse load: seen in what it left)
FAILED_STEP = {
    "raw copy": "online_retail__raw",
    "cleaned Parquet": "online_retail__cleaned",
    "gold Parquet": "gold_star_schema",
}
# the gold table whose write or load each scenario fills the disk in (the star schema's step writes the dimensions,
# then the fact table)
FAILED_TABLE = {"gold Parquet": "sales_transactions", "warehouse load": "sales_transactions"}


def whole_units(units: dict[str, Any], first: dict[str, Any], final: dict[str, Any]) -> list[str]:
    """The units that are neither as the first run left them nor as the uninterrupted final run does."""
    return [
        f"{k}: {v}; the first run: {first.get(k)}, the uninterrupted run: {final.get(k)}"
        for k, v in sorted(units.items())
        if v not in (first.get(k), final.get(k))
    ]


@pytest.mark.parametrize("write", list(HEADROOMS))
def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_previous_data(
    write: str, unshare: list[str], reference: dict[str, Any], tmp_path: Path
) -> None:
    began = time.monotonic()
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    headroom = HEADROOMS[write](reference["kib"])
    env = faults.cli_env(mnt / "data")
    env.update(
        MNT=str(mnt),
        DATA=str(mnt / "data"),
        OUT=str(out),
        SMALL=str(RETAIL_SAMPLE_5000),
        BIG=str(FULL_RETAIL),
        CLI=str(faults.CONSOLE_SCRIPT),
        PY=str(Path(faults.CONSOLE_SCRIPT).parent / "python"),
        ROOMY_KIB=str(ROOMY_KIB),
        HEADROOM_KIB=str(headroom),
    )
    done = subprocess.run(
        namespace_command(SCRIPT, unshare), cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=540
    )
    assert done.returncode == 0, f"the scenario's script failed ({done.returncode}): {done.stderr[-2000:]}"
    got = Outcome(out)
    first, final = reference["first"], reference["final"]

    # 1. the first run, on the small input
    assert got.rc(1) == 0, got.console(1)[-3000:]
    assert not faults.differences(first["figures"], got.check("first")["figures"])

    # 2. the disk fills: non-zero, no traceback, one line naming the problem and a path on the full disk
    console = got.console(2)
    size, used, avail = (int(x) for x in (out / "df.txt").read_text().split())
    print(
        f"\n{write}: {headroom:,} KiB of headroom after the full data set landed; after the run "
        f"{used:,} of {size:,} KiB used ({avail:,} free); exit {got.rc(2)}"
    )
    print("\n".join(ln for ln in console.splitlines() if not ln.startswith("skip")))
    problems: list[str] = []  # every way the run with the full disk went wrong, reported together
    if got.rc(2) == 0:
        problems.append("the run on the full disk exited 0")
    if "Traceback" in console:
        raised = [ln for ln in console.splitlines() if re.match(r"^[\w.]+(Error|Exception)\b", ln)] or ["?"]
        problems.append(f"a traceback on the console, raising: {raised[-1][:300]}")
    named = [ln for ln in console.splitlines() if NO_SPACE.search(ln) and str(mnt) in ln]
    if not named:
        problems.append(f"no line says 'No space left on device' with a path below {mnt}")
    elif write in FAILED_STEP and FAILED_STEP[write] not in "\n".join(named):
        problems.append(f"the disk did not fill in the {write}: {named}")

    # the previous data: readable, nothing left half-written, each unit whole
    after = got.check("after_full")
    problems += [f"{k}: {v}" for k, v in after.items() if k.endswith(" error")]
    problems += [f"unreadable after the full disk: {u}" for u in after.get("unreadable", [])]
    problems += [f"in-flight file left on the full disk: {t}" for t in after.get("temporary", [])[:5]]
    units = after.get("units", {})
    problems += [f"not whole: {t}" for t in whole_units(units, first["units"], final["units"])]
    kept = sorted(k for k, v in units.items() if v == first["units"].get(k) != final["units"].get(k))
    replaced = sorted(k for k, v in units.items() if v == final["units"].get(k) != first["units"].get(k))
    print(f"as the first run left them: {kept}; replaced by the new data: {replaced}")
    if write in ("raw copy", "cleaned Parquet") and replaced:  # nothing after the failed write may have run
        problems.append(f"replaced although the {write} failed: {replaced}")
    failed = {FAILED_TABLE[write]} if write in FAILED_TABLE else set()
    if write == "warehouse load":  # the fact table's Parquet was written whole; its load is what failed
        facts = "gold/sales_transactions.parquet rows"
        if units.get(facts) != final["units"][facts]:
            problems.append(f"the disk filled before the warehouse load: {facts} {units.get(facts)}")
    for table in sorted(failed):  # the load that failed: the table as the first run left it
        if units.get(f"warehouse gold.{table}") != first["units"][f"warehouse gold.{table}"]:
            problems.append(f"warehouse gold.{table} whose load failed is not as before: {units.get(table)}")

    # 3. room again: the next run completes and gives the uninterrupted figures
    if got.rc(3) != 0:
        problems.append(f"with room again, the next run exited {got.rc(3)}: {got.console(3)[-1500:]}")
    diff = faults.differences(final["figures"], got.check("recovered").get("figures", {}))
    problems += [f"with room again, the figures differ from the uninterrupted run: {d}" for d in diff]
    print(f"test {time.monotonic() - began:.0f} s; " + (f"{len(problems)} problem(s)" if problems else "no problem"))
    assert not problems, f"a full disk in the {write}:\n" + "\n".join(problems)
