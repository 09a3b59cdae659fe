"""Users, roles, password hashing, tokens, permissions."""
