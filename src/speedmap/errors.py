"""Exceptions that the CLI turns into clear one-line messages instead of tracebacks."""

from __future__ import annotations


class SpeedmapError(Exception):
    """Base class for errors a user can act on."""


class DatasetError(SpeedmapError):
    """A dataset cannot be read, or (with ``strict``) has problems."""
