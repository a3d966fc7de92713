"""The report's blocks (headings, paragraphs, lists, tables, images, code) rendered to markdown and to one
self-contained HTML page (images embedded)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Block:
    kind: str  # h1 | h2 | p | table | image | list | code
    content: Any
    caption: str = ""


def _md_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def to_markdown(blocks_: list[Block], folder: Path) -> str:
    out = []
    for b in blocks_:
        if b.kind == "h1":
            out.append(f"# {b.content}")
        elif b.kind == "h2":
            out.append(f"## {b.content}")
        elif b.kind == "p":
            out.append(b.content)
        elif b.kind == "list":
            out.append("\n".join(f"- {x}" for x in b.content))
        elif b.kind == "table":
            out.append((f"*{b.caption}*\n\n" if b.caption else "") + _md_table(b.content))
        elif b.kind == "image":
            out.append(f"![{b.caption}]({Path(b.content).relative_to(folder).as_posix()})")
        elif b.kind == "code":
            out.append(f"```\n{b.content}\n```")
    return "\n\n".join(out) + "\n"


def _inline_md(text: str) -> str:
    """Escape, then the one piece of markdown the blocks use inline: **bold**."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks_: list[Block]) -> str:
    body = []
    for b in blocks_:
        if b.kind in ("h1", "h2"):
            body.append(f"<{b.kind}>{html.escape(b.content)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_inline_md(b.content)}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline_md(x)}</li>" for x in b.content) + "</ul>")
        elif b.kind == "table":
            head, *rows = b.content
            cap = f"<caption>{html.escape(b.caption)}</caption>" if b.caption else ""
            body.append(
                f"<table>{cap}<tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in head)
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                + "</table>"
            )
        elif b.kind == "image":
            data = base64.b64encode(Path(b.content).read_bytes()).decode()
            body.append(
                f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
            )
        elif b.kind == "code":
            body.append(f"<pre>{html.escape(b.content)}</pre>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
        "table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:right}td:first-child,th:first-child{text-align:left}caption{font-style:italic;padding:.3em}"
        "img{max-width:100%}pre{background:#f4f4f4;padding:.8em;overflow-x:auto}"
        "figcaption{color:#555}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>speedmap study</title><style>{style}</style>"
        f"</head><body>{''.join(body)}</body></html>\n"
    )
