"""Append-only, hash-chained audit log."""

from loralab.audit.log import AuditLog, VerifyResult

__all__ = ["AuditLog", "VerifyResult"]
