"""The module the Celery CLI loads::

    celery -A loralab.entrypoints.worker.main worker -Q cpu --concurrency 1 --loglevel INFO

The one import-time construction allowed: this is an entrypoint.
"""

from __future__ import annotations

from loralab.entrypoints.worker.app import create_celery
from loralab.observability.logs import configure_logging
from loralab.settings import load_settings

settings = load_settings()
configure_logging(settings, "worker")
app = create_celery(settings)
