"""Users, roles, password hashing, tokens, permissions."""

from loralab.users.service import Actor, RequestContext, UserService, operator_actor

__all__ = ["Actor", "RequestContext", "UserService", "operator_actor"]
