"""Open the Dagster UI (``dagster dev``) on this project with the same DAGSTER_HOME as the CLI, so the
runs of ``demo`` and ``run`` are visible and the sensors run (arrival sensors are on by default locally).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

NAME = "ui"
HELP = "start the Dagster UI and daemon (dagster dev) for this project"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)


def main(args: argparse.Namespace) -> int:
    from ecommerce_assets.orchestration import ensure_dagster_home

    home = ensure_dagster_home()
    print(f"DAGSTER_HOME={home}; UI at http://{args.host}:{args.port}")
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "ecommerce_assets.definitions",
           "--host", args.host, "--port", str(args.port)]
    return subprocess.call(cmd, env=os.environ.copy())
