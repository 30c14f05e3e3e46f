"""Replay an Online Retail CSV into the ingestion API: see ``ecommerce_assets.dev.replay``."""

from ecommerce_assets.dev import replay as _replay
from ecommerce_assets.dev.replay import HELP, NAME, add_arguments, main

__doc__ = _replay.__doc__  # the command's --help description
__all__ = ["HELP", "NAME", "add_arguments", "main"]
