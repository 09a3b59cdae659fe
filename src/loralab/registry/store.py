"""The card folder: one JSON file per version, a transition history per model, promotion locks.

Layout: ``<card_dir>/<name>@<version>.json``, ``<card_dir>/history/<name>.jsonl``,
``<card_dir>/locks/<name>.lock``. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loralab.errors import NotFound
from loralab.registry.cards import ModelCard, validate_card_json
from loralab.training.files import atomic_write_text, file_lock


class CardStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, name: str, version: str) -> Path:
        return self.root / f"{name}@{version}.json"

    def write(self, card: ModelCard) -> Path:
        path = self.path_of(card.name, card.version)
        atomic_write_text(path, card.model_dump_json(indent=1))
        return path

    def read(self, name: str, version: str) -> ModelCard:
        path = self.path_of(name, version)
        if not path.is_file():
            raise NotFound(f"no model card for {name}@{version}")
        return validate_card_json(path.read_bytes())

    def exists(self, name: str, version: str) -> bool:
        return self.path_of(name, version).is_file()

    def all_cards(self) -> list[ModelCard]:
        if not self.root.is_dir():
            return []
        cards = []
        for path in sorted(self.root.glob("*@*.json")):
            cards.append(validate_card_json(path.read_bytes()))
        return cards

    def stamp(self) -> int:
        """Changes whenever a card is added or replaced (renames touch the folder)."""
        try:
            return self.root.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def append_history(self, name: str, entry: dict[str, Any]) -> None:
        path = self.root / "history" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def history(self, name: str) -> list[dict[str, Any]]:
        path = self.root / "history" / f"{name}.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Serialise stage changes of one model across threads and processes."""
        with file_lock(self.root / "locks" / f"{name}.lock"):
            yield
