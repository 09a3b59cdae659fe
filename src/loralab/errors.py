"""Domain errors. Services raise these; entrypoints turn them into messages or HTTP codes."""


class LoralabError(Exception):
    """Base of every error loralab raises on purpose."""


class InvalidInput(LoralabError):
    """The caller gave something malformed or out of range."""


class NotFound(LoralabError):
    """A named thing (run, model, file) does not exist."""


class Conflict(LoralabError):
    """The request clashes with the current state."""


class PermissionDenied(LoralabError):
    """The caller may not do this."""


class NotAuthenticated(LoralabError):
    """No valid credentials: a missing, expired, forged or revoked token, or a failed sign-in."""


class TooManyRequests(LoralabError):
    """A rate or quota limit was hit; ``retry_after`` seconds until it may work again."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(LoralabError):
    """The request is larger than a configured limit."""


class StorageFull(LoralabError):
    """The server ran out of disk space (or quota) while writing; nothing half-written is kept.

    Not the caller's fault: the API answers 507 Insufficient Storage.
    """
