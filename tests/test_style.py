"""House rules that ruff cannot state: no function in src/ longer than 80 lines, no room (module) longer than
500, no import cycle between rooms (imports inside functions counted: a local import hides a cycle, it does not
remove it)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "speedmap"
MAX_LINES = 80
MAX_ROOM_LINES = 500


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


def test_no_room_in_src_is_longer_than_500_lines() -> None:
    sizes = {p.relative_to(SRC): len(p.read_text(encoding="utf-8").splitlines()) for p in SRC.rglob("*.py")}
    too_long = sorted(f"{p} ({n} lines)" for p, n in sizes.items() if n > MAX_ROOM_LINES)
    assert not too_long, "modules longer than 500 lines:\n" + "\n".join(too_long)


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its body (packages' ``__init__`` left out)."""
    paths = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                deps |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in paths and d != name and paths[d].name != "__init__.py"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = stack[stack.index(v) :]
                del stack[stack.index(v) :]
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph(SRC)
    assert len(graph) > 50 and graph["speedmap.data.io"]  # the rule looks at the real tree
    assert not cycles(graph), cycles(graph)


def test_the_cycle_finder_sees_a_cycle_through_a_local_import(tmp_path: Path) -> None:
    pkg = tmp_path / "speedmap"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from speedmap.b import x\n")
    (pkg / "b.py").write_text("def x():\n    from speedmap.c import y\n")
    (pkg / "c.py").write_text("import speedmap.a\n")
    (pkg / "d.py").write_text("from speedmap import a\n")
    assert cycles(import_graph(pkg)) == [["speedmap.a", "speedmap.b", "speedmap.c"]]
