"""One folder per domain: retail/, catalog/, orders/, transactions/, stream/ (loaded by ``dg.load_defs``)."""
