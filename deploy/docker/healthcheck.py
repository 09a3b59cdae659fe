"""The image's HEALTHCHECK: healthy when this container's process answers its health route.

One image runs several processes, so without an argument it asks each local endpoint a loralab
process serves (API, prediction service, UI, worker metrics, MLflow) and is healthy when one
answers 2xx. With a URL argument it asks only that one (compose and the chart name it).
"""

from __future__ import annotations

import sys
import urllib.request

LOCAL = (
    "http://127.0.0.1:8080/health",
    "http://127.0.0.1:8000/health",
    "http://127.0.0.1:8501/_stcore/health",
    "http://127.0.0.1:9101/metrics",
    "http://127.0.0.1:5000/health",
)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - local http
            return 200 <= response.status < 300
    except OSError:
        return False


def main(argv: list[str]) -> int:
    urls = argv[1:] or list(LOCAL)
    return 0 if any(answers(url) for url in urls) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
