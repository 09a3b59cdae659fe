"""The card folder: one JSON file per version, ``<card_dir>/<name>@<version>.json``.

Writes are atomic (temp file + rename). A card's ``stage`` is written by the stage store
(``registry.mlflow_stages``), which also keeps the history and the locks in this folder.
"""

from __future__ import annotations

from pathlib import Path

from loralab.errors import NotFound
from loralab.registry.cards import ModelCard, validate_card_json
from loralab.training.files import atomic_write_text


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

    def forget_stamp(self) -> None:
        """Nothing to forget: the folder's stamp is read afresh every time."""
