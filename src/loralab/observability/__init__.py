"""Prometheus metrics, defined once."""
