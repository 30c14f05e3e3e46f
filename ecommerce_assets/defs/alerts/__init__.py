"""Alerts for every domain: a run-failure sensor and a run-success summary, sent through the ``notifier``."""
