"""``uvicorn loralab.entrypoints.api.main:app``: the platform API from the environment's settings.

The one place the API app is built at import time (an entrypoint); everything else builds it
with ``create_app(settings)``.
"""

from __future__ import annotations

from loralab.entrypoints.api.app import create_app
from loralab.observability.logs import configure_logging
from loralab.settings import load_settings

settings = load_settings()
configure_logging(settings, "api")
app = create_app(settings)
