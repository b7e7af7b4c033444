"""Errors the system of record raises. Each message says what was wrong; nothing stored changed."""

from __future__ import annotations


class RecordError(Exception):
    """Base class of every error `memory` raises on purpose."""


class InvalidInputError(RecordError, ValueError):
    """A value given to the record is malformed (empty, too long, not UTF-8, bad time range...)."""


class UnknownRelationError(InvalidInputError, LookupError):
    """The relation is not in the vocabulary (register it first)."""


class NotFoundError(RecordError, LookupError):
    """No row has that id."""


class WriterLockedError(RecordError):
    """Another writer holds the record's lock file; one writer at a time."""


class ReadOnlyError(RecordError):
    """The record was opened read-only."""


class SchemaError(RecordError):
    """The database file is not a kedit record, or was written by a newer schema."""
