"""Problems found while reading a dataset: what, where, and what was done about it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    """What is wrong; the value is the stable name in ``problems.json``, :attr:`text` the summary's words."""

    BAD_ANNOTATION_FILE = "bad_annotation_file"
    MISSING_IMAGE = "missing_image"
    CORRUPT_IMAGE = "corrupt_image"
    SIZE_MISMATCH = "size_mismatch"
    BAD_FIELDS = "bad_fields"
    NON_NUMERIC = "non_numeric"
    CLASS_OUT_OF_RANGE = "class_out_of_range"
    UNKNOWN_CATEGORY = "unknown_category"
    UNKNOWN_IMAGE = "unknown_image"
    ZERO_AREA_BOX = "zero_area_box"
    INVERTED_BOX = "inverted_box"
    BOX_OUTSIDE = "box_outside"
    DUPLICATE_BOX = "duplicate_box"
    MISSING_SPLIT = "missing_split"
    MOVED_SPLIT = "moved_split"
    CLASS_LIST = "class_list"

    @property
    def text(self) -> str:
        return _KIND_TEXT[self]


_KIND_TEXT = {
    Kind.BAD_ANNOTATION_FILE: "annotation file empty, truncated or malformed",
    Kind.MISSING_IMAGE: "image file missing",
    Kind.CORRUPT_IMAGE: "image unreadable or corrupt",
    Kind.SIZE_MISMATCH: "annotated image size differs from the file",
    Kind.BAD_FIELDS: "label line with the wrong number of fields",
    Kind.NON_NUMERIC: "label value not a number",
    Kind.CLASS_OUT_OF_RANGE: "class id out of range",
    Kind.UNKNOWN_CATEGORY: "annotation with an unknown category",
    Kind.UNKNOWN_IMAGE: "annotation for an image id that is not listed",
    Kind.ZERO_AREA_BOX: "zero-area box",
    Kind.INVERTED_BOX: "inverted box (max < min)",
    Kind.BOX_OUTSIDE: "box outside the image",
    Kind.DUPLICATE_BOX: "duplicate box",
    Kind.MISSING_SPLIT: "split listed but not found",
    Kind.MOVED_SPLIT: "split path from another machine",
    Kind.CLASS_LIST: "class list inconsistent",
}


class Action(StrEnum):
    """What was done about a problem."""

    SKIPPED_IMAGE = "image skipped"
    SKIPPED_BOX = "box skipped"
    CLIPPED_BOX = "box clipped to the image"
    SKIPPED_SPLIT = "split skipped"
    SKIPPED_ANNOTATION = "annotation skipped"
    USED_FILE_SIZE = "file size used"
    FOUND_BESIDE = "found beside the data file"
    KEPT = "kept"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: Kind
    file: str
    message: str
    action: Action
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message} ({self.action})"


@dataclass
class ProblemLog:
    """Collects problems; nothing is dropped silently."""

    items: list[Problem] = field(default_factory=list)

    def add(self, kind: Kind, file: object, message: str, action: Action, line: int | None = None) -> None:
        self.items.append(Problem(Kind(kind), str(file), message, Action(action), line))

    def extend(self, other: ProblemLog) -> None:
        self.items.extend(other.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def counts(self) -> Counter[tuple[Kind, Action]]:
        """Counts by ``(kind, action)``."""
        return Counter((p.kind, p.action) for p in self.items)

    def summary_lines(self) -> list[str]:
        return [
            f"{n:>7}  {kind.text} ({action})"
            for (kind, action), n in sorted(self.counts().items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def corrupt_images(self) -> list[str]:
        """The image files skipped because they cannot be read or decoded, in the order found."""
        return [p.file for p in self.items if p.kind is Kind.CORRUPT_IMAGE]

    def report_lines(self, source: object, named: int = 10) -> list[str]:
        """What a command that uses the dataset at ``source`` says about its problems: how many, how many
        of each kind, and the skipped images by name (the first ``named``)."""
        if not self.items:
            return []
        lines = [
            f"{len(self)} dataset problem(s) skipped or fixed (see `speedmap datasets validate {source}`):",
            *self.summary_lines(),
        ]
        skipped = [p for p in self.items if p.action is Action.SKIPPED_IMAGE]
        lines += [f"  {p}" for p in skipped[:named]]
        if len(skipped) > named:
            lines.append(f"  ... and {len(skipped) - named} more skipped images")
        return lines

    def to_json(self) -> list[dict[str, object]]:
        return [
            {"kind": p.kind.value, "file": p.file, "line": p.line, "message": p.message, "action": p.action.value}
            for p in self.items
        ]
