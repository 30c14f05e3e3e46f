"""Thin shim so ``dagster dev -f definitions.py`` works; the code location is ``ecommerce_assets.definitions``."""

from ecommerce_assets.definitions import defs

__all__ = ["defs"]
