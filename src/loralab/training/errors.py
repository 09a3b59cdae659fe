"""Errors of the training library that callers catch without importing torch."""


class TrainingFailed(RuntimeError):
    """Training started but could not finish (non-finite loss, a crash in a step)."""
