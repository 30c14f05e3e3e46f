"""Open the Dagster UI (``dagster dev``) on this project with the same DAGSTER_HOME as the CLI, so the
runs of ``demo`` and ``run`` are visible and the sensors run (arrival sensors are on by default locally).

``dagster dev`` runs as a child in its own process group. SIGTERM or SIGINT (Ctrl-C) to this command is
forwarded to that whole group (webserver, daemon, code server, run workers); whatever is still alive after
``--stop-timeout`` seconds is killed, so the command always stops promptly.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

NAME = "ui"
HELP = "start the Dagster UI and daemon (dagster dev) for this project"

STOP_TIMEOUT_SECONDS = 8.0
LEFTOVER_GRACE_SECONDS = 2.0
_POLL_SECONDS = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=3000, help="port (default: %(default)s)")
    parser.add_argument(
        "--stop-timeout", type=float, default=STOP_TIMEOUT_SECONDS, metavar="S",
        help="on SIGTERM/SIGINT, seconds Dagster gets to shut down before it is killed (default: %(default)s)",
    )


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies waiting to be reaped do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel (a zombie counts as alive there)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces or parentheses, so split after the last ")"
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> bool:
    """Send ``sig`` to the child's process group, wait up to ``timeout`` s for all of it to exit, then kill it.

    Once ``dagster dev`` itself has exited (its own shutdown done), what is left of its group gets at most
    ``LEFTOVER_GRACE_SECONDS`` more. True when it all stopped by itself, False when something was killed.
    """
    pgid = proc.pid  # the child leads its own group
    _signal_group(pgid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # reaps the leader, so that it stops counting as alive
            if not _group_alive(pgid):
                return True
            deadline = min(deadline, time.monotonic() + LEFTOVER_GRACE_SECONDS)
        time.sleep(_POLL_SECONDS)
    _signal_group(pgid, signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    return False


def _child_setup() -> None:
    """In the child before exec: die with this process (Linux), so that killing ``ui`` never orphans Dagster."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.runtime.catchup import ensure_dagster_home

    home = ensure_dagster_home()
    print(f"DAGSTER_HOME={home}; UI at http://{args.host}:{args.port}", flush=True)
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "ecommerce_assets.definitions",
           "--host", args.host, "--port", str(args.port)]
    env = os.environ.copy()
    # the tools Dagster runs (dbt, dagster-webserver) are the ones installed beside this interpreter
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])

    requested: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        requested.append(signum)

    # Handlers installed before the child starts: a caught signal is reset to its default at exec, so the
    # child's SIGINT/SIGTERM work even when this process was started with them ignored (a non-interactive
    # shell's `cmd &`), which otherwise makes `dagster dev` ignore both.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        # its own process group: a terminal's Ctrl-C reaches dagster dev once (forwarded by us), not twice
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=_child_setup)
        while not requested:
            try:
                proc.wait(timeout=_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                continue
        if requested:
            sig = signal.SIGTERM if requested[0] == signal.SIGHUP else requested[0]
            print(f"ui: {signal.Signals(requested[0]).name} received, stopping Dagster", flush=True)
            begin = time.monotonic()
            clean = stop_group(proc, sig, args.stop_timeout)
            how = "" if clean else " (what was still running was killed)"
            print(f"ui: Dagster stopped in {time.monotonic() - begin:.1f} s{how}", flush=True)
            return 0
        # dagster dev ended on its own: leave nothing of its group behind
        stop_group(proc, signal.SIGTERM, args.stop_timeout)
        code = proc.returncode or 0
        return 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + signal number
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
