"""Background loops: run an action now and then at an interval on a daemon thread.

One copy for the worker's heartbeats, its metrics beat and the recovery sweep.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("loralab")


def every(
    interval: float,
    action: Callable[[], object],
    stop: threading.Event,
    *,
    name: str,
    failure: str,
    logger: logging.Logger = log,
) -> threading.Thread:
    """Run ``action`` now and then every ``interval`` seconds on a daemon thread until ``stop``
    is set. A failure is logged (``failure: error``) and the next turn tries again."""

    def loop() -> None:
        while True:
            try:
                action()
            except Exception as err:  # noqa: BLE001 - a hiccup (database, broker): next turn
                logger.warning("%s: %s", failure, err)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
