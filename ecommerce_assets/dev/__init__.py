"""Development tools: the demo, the API simulators, the CSV replayer and the stream demo.

Nothing in ``defs/`` imports them (``tests/test_architecture.py``); the CLI's ``demo``, ``catalog-sim`` and
``replay`` commands do."""
