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
