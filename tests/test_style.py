"""House rules that ruff cannot state: no function in src/ longer than 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "speedmap"
MAX_LINES = 80


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_no_function_in_src_is_longer_than_80_lines() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50  # the rule looks at the real tree
    too_long = []
    for path in files:
        for fn in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            start = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
            lines = fn.end_lineno - start + 1 if fn.end_lineno else 0
            if lines > MAX_LINES:
                too_long.append(f"{path.relative_to(SRC)}:{fn.lineno} {fn.name} ({lines} lines)")
    assert not too_long, "functions longer than 80 lines:\n" + "\n".join(too_long)


def test_the_rule_counts_lines_from_the_decorator_to_the_end() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    [fn] = _functions(ast.parse(f"@decorator\ndef f():\n{body}\n"))
    assert fn.end_lineno - min(fn.lineno, fn.decorator_list[0].lineno) + 1 == 82
