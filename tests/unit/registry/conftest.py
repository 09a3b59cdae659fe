"""Fixtures for the registry unit tests (fakes in registry_fakes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers.registry_fakes import MemoryRegistry, WordEmbedder, make_settings

from loralab.registry.service import RegistryService


@pytest.fixture()
def fake_registry() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture()
def service(tmp_path: Path, fake_registry: MemoryRegistry) -> RegistryService:
    return RegistryService(make_settings(tmp_path), fake_registry, WordEmbedder())
