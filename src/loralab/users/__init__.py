"""Users, roles, password hashing, tokens, permissions."""

from loralab.users.service import UserService

__all__ = ["UserService"]
