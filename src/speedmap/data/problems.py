"""Problems found while reading a dataset: what, where, and what was done about it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# kind -> human description (the summary prints these).
KINDS: dict[str, str] = {
    "bad_annotation_file": "annotation file empty, truncated or malformed",
    "missing_image": "image file missing",
    "corrupt_image": "image unreadable or corrupt",
    "size_mismatch": "annotated image size differs from the file",
    "bad_fields": "label line with the wrong number of fields",
    "non_numeric": "label value not a number",
    "class_out_of_range": "class id out of range",
    "unknown_category": "annotation with an unknown category",
    "unknown_image": "annotation for an image id that is not listed",
    "zero_area_box": "zero-area box",
    "inverted_box": "inverted box (max < min)",
    "box_outside": "box outside the image",
    "duplicate_box": "duplicate box",
    "missing_split": "split listed but not found",
    "class_list": "class list inconsistent",
}

# What was done about a problem.
SKIPPED_IMAGE = "image skipped"
SKIPPED_BOX = "box skipped"
CLIPPED_BOX = "box clipped to the image"
SKIPPED_SPLIT = "split skipped"
SKIPPED_ANNOTATION = "annotation skipped"
KEPT = "kept"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    file: str
    message: str
    action: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message} ({self.action})"


@dataclass
class ProblemLog:
    """Collects problems; nothing is dropped silently."""

    items: list[Problem] = field(default_factory=list)

    def add(self, kind: str, file: object, message: str, action: str, line: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        self.items.append(Problem(kind, str(file), message, action, line))

    def extend(self, other: ProblemLog) -> None:
        self.items.extend(other.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def counts(self) -> Counter[tuple[str, str]]:
        """Counts by ``(kind, action)``."""
        return Counter((p.kind, p.action) for p in self.items)

    def summary_lines(self) -> list[str]:
        return [
            f"{n:>7}  {KINDS[kind]} ({action})"
            for (kind, action), n in sorted(self.counts().items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def to_json(self) -> list[dict[str, object]]:
        return [
            {"kind": p.kind, "file": p.file, "line": p.line, "message": p.message, "action": p.action}
            for p in self.items
        ]
