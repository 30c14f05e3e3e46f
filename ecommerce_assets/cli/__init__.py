"""The ``ecommerce-assets`` console script.

Each subcommand is a module in this package defining ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int``; they are discovered here, so adding a command is adding a module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecommerce-assets",
        description=(
            "An e-commerce data platform as one Dagster asset graph. Runs on a local lake folder + DuckDB "
            "(ECOMMERCE_ENV=local, the default; data under ECOMMERCE_DATA_DIR, default ./data) or on AWS "
            "(ECOMMERCE_ENV=aws)."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if not hasattr(module, "NAME"):
            continue
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__)
        module.add_arguments(cmd)
        cmd.set_defaults(_handler=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, check the settings (one line per bad setting, exit 2), then run the subcommand."""
    from ecommerce_assets.settings import SettingsError, get_settings

    try:
        args = build_parser().parse_args(argv)  # some commands' defaults come from the settings
        get_settings()
    except SettingsError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    return int(args._handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
