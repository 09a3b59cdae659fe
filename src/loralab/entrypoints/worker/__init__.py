"""Celery app factory and tasks."""
