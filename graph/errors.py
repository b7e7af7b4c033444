"""Errors `graph` raises on purpose."""

from __future__ import annotations


class GraphError(Exception):
    """Base class of every error `graph` raises on purpose."""


class GraphInputError(GraphError, ValueError):
    """A name, relation id, query binding or file is not acceptable."""


class GraphStoreError(GraphError):
    """The persistent triple store could not be opened or read."""
