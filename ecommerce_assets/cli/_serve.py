"""Run a local server in the foreground until SIGTERM or SIGINT, then shut it down promptly."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def serve_until_signalled(start: Callable[[], object], stop: Callable[[], None]) -> int:
    """Start a server (that serves in a background thread), wait for SIGTERM/SIGINT, then stop it.

    The main thread only waits on an event, so a signal is handled at once whatever the server is
    doing; ``stop`` closes the listening socket. SIGINT is handled too when the shell started the
    process in the background (where it would otherwise be ignored).
    """
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        start()
        while not stopping.wait(timeout=1.0):
            pass
    finally:
        stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
