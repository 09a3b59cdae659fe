"""Shared test helpers: fakes, contracts and builders imported as ``tests.helpers.<module>``."""
