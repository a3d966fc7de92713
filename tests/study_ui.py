"""A study UI for tests: it records the stages and says nothing."""

from __future__ import annotations

from typing import Any


class Quiet:
    """The study's UI, saying nothing; ``stages`` keeps what it was told."""

    def __init__(self) -> None:
        self.stages: list[str] = []

    def stage(self, text: str) -> None:
        self.stages.append(text)

    def note(self, text: str) -> None:
        pass

    def training(self, event: dict[str, Any]) -> None:
        pass

    def step_done(self) -> None:
        pass
