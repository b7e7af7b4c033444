"""Errors `retrieval` raises on purpose."""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class of every error `retrieval` raises on purpose."""


class VectorInputError(RetrievalError, ValueError):
    """Vectors or ids have the wrong shape, type or values."""


class IndexCorruptError(RetrievalError):
    """A saved index is missing, unreadable, or does not match its manifest: rebuild it."""
