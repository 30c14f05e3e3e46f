"""``python -m ecommerce_assets.cli`` runs the console script."""

import sys

from ecommerce_assets.cli import main

sys.exit(main())
