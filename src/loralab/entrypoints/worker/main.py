"""The module the Celery CLI loads::

    celery -A loralab.entrypoints.worker.main worker -Q cpu --concurrency 1 --loglevel INFO

The one import-time construction allowed: this is an entrypoint.
"""

from __future__ import annotations

from loralab.entrypoints.worker.app import create_celery
from loralab.settings import load_settings

app = create_celery(load_settings())
