"""loralab: fine-tune text classifiers with LoRA and run their whole life."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("loralab")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
