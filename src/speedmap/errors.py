"""Exceptions that the CLI turns into clear one-line messages instead of tracebacks."""

from __future__ import annotations


class SpeedmapError(Exception):
    """Base class for errors a user can act on."""


class DatasetError(SpeedmapError):
    """A dataset cannot be read, or (with ``strict``) has problems."""


class MissingExtra(SpeedmapError):
    """A feature whose optional dependency is not installed; says which extra brings it in."""

    def __init__(self, feature: str, extra: str, exc: ImportError | None = None) -> None:
        package = f" ({exc.name} is not installed)" if exc is not None and exc.name else ""
        super().__init__(f"{feature} needs the '{extra}' extra{package}: pip install 'speedmap[{extra}]'")
        self.feature, self.extra = feature, extra
