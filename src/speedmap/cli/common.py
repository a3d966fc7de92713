"""What every command shares: help that reads well, consoles, clean errors instead of tracebacks, progress bars."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperCommand, TyperGroup, TyperOption

from speedmap.errors import SpeedmapError

err = Console(stderr=True)
out = Console()

P = ParamSpec("P")
R = TypeVar("R")


def paragraphs(text: str | None) -> str | None:
    """Help text with each paragraph on one line: the terminal wraps it, not the docstring's source lines (Typer's
    rich help keeps a docstring's line breaks). A paragraph that starts with Click's ``\\b`` keeps its lines."""
    if not text:
        return text
    parts = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(line.strip() for line in p.split("\n")) for p in parts)


def _as_flag(param: Any) -> Any:
    """A flag takes no value, so its help shows no value placeholder (Typer's rich help writes ``<bool>``)."""
    if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
        param.metavar = ""
    return param


class _ReadableHelp:
    """What Command and Group add to Typer's: help paragraphs on one line each, and flags without ``<bool>``."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for key in ("help", "short_help"):
            if key in kwargs:
                kwargs[key] = paragraphs(kwargs[key])
        super().__init__(*args, **kwargs)
        for param in self.params:
            _as_flag(param)

    def get_help_option(self, ctx: Any) -> Any:
        return _as_flag(super().get_help_option(ctx))  # type: ignore[misc]


class Command(_ReadableHelp, TyperCommand):
    """A command whose ``--help`` reads as clean paragraphs and plain flags; every command uses it (``cls=``)."""


class Group(_ReadableHelp, TyperGroup):
    """A group of commands with the same help rendering as :class:`Command`."""


def clean_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn user-facing errors into one clear message and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SpeedmapError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    if not enabled:
        yield lambda done, total: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
