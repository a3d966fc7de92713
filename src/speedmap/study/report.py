"""The study's report from ``results.json``: ``report.md``, a self-contained ``report.html`` (plots
embedded) and the plots as PNG files. Both documents are rendered from one list of blocks."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speedmap.plotting import pyplot, save
from speedmap.study.config import SATURATED_MAP50
from speedmap.study.recommend import recommend

DEST_NAMES = {"local": "in-process (ONNX Runtime)", "local-cuda": "in-process, CUDA", "http": "HTTP server",
              "browser": "web browser (onnxruntime-web)"}  # fmt: skip


@dataclass
class Block:
    kind: str  # h1 | h2 | p | table | image | list | code
    content: Any
    caption: str = ""


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pct_points(v: float) -> str:
    return f"{100 * v:+.1f}"


def accuracy_table(results: dict[str, Any]) -> list[list[str]]:
    rows = [["task", "test images", "Fast mAP50", "Accurate mAP50", "Δ mAP50", "Fast mAP50-95",
             "Accurate mAP50-95", "Δ mAP50-95", "saturated"]]  # fmt: skip
    for name, t in results["tasks"].items():
        f, a = t["sizes"].get("fast"), t["sizes"].get("accurate")
        if f is None or a is None:
            continue
        mf, ma = f["metrics"], a["metrics"]
        sat = max(mf["map50"] or 0.0, ma["map50"] or 0.0) >= SATURATED_MAP50
        rows.append([name, str(f.get("test_images") or "-"), _f(mf["map50"]), _f(ma["map50"]),
                     _pct_points(ma["map50"] - mf["map50"]), _f(mf["map"]), _f(ma["map"]),
                     _pct_points(ma["map"] - mf["map"]), "yes" if sat else "no"])  # fmt: skip
    return rows


def speed_table(results: dict[str, Any], dest: str) -> list[list[str]]:
    rows = [["task", "size", "p50 ms", "p90 ms", "FPS (one at a time)", "in flight", "req/s (many in flight)",
             "p50 ms (loaded)", "valid"]]  # fmt: skip
    for name, t in results["tasks"].items():
        for size, e in t["sizes"].items():
            s = e.get("speed", {}).get(dest)
            if s is None:
                continue
            one, many = s["single"], s.get("loaded")
            valid = one["valid"] and (many is None or many["valid"])
            rows.append([name, size, _f(one["p50_ms"], 1), _f(one["p90_ms"], 1), _f(one["fps"], 1),
                         str(many["concurrency"]) if many else "-", _f(many["throughput_rps"], 1) if many else "-",
                         _f(many["p50_ms"], 1) if many else "-", "VALID" if valid else "UNSTABLE"])  # fmt: skip
    return rows


def relative_speed_rows(results: dict[str, Any]) -> list[list[str]]:
    """Fast vs Accurate per destination: how many times faster Fast is (medians over tasks)."""
    import statistics

    rows = [["destination", "Fast speed-up, one at a time (p50 latency ratio)",
             "Fast speed-up, many in flight (throughput ratio)", "tasks"]]  # fmt: skip
    for dest in results.get("destinations", []):
        lat, tput = [], []
        for t in results["tasks"].values():
            f = t["sizes"].get("fast", {}).get("speed", {}).get(dest)
            a = t["sizes"].get("accurate", {}).get("speed", {}).get(dest)
            if not f or not a:
                continue
            lat.append(a["single"]["p50_ms"] / f["single"]["p50_ms"])
            if f.get("loaded") and a.get("loaded") and a["loaded"]["throughput_rps"]:
                tput.append(f["loaded"]["throughput_rps"] / a["loaded"]["throughput_rps"])
        if lat:
            span = lambda v: f"{statistics.median(v):.2f}x ({min(v):.2f}-{max(v):.2f})" if v else "-"  # noqa: E731
            rows.append([DEST_NAMES.get(dest, dest), span(lat), span(tput), str(len(lat))])
    return rows


def training_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = [["task", "Fast training s", "Accurate training s", "Accurate / Fast", "Fast img/s", "Accurate img/s",
             "epochs"]]  # fmt: skip
    for name, t in results["tasks"].items():
        f, a = t["sizes"].get("fast"), t["sizes"].get("accurate")
        if f is None or a is None:
            continue
        ft, at = f["train"], a["train"]
        rows.append([name, f"{ft['total_seconds']:.0f}", f"{at['total_seconds']:.0f}",
                     f"{at['total_seconds'] / ft['total_seconds']:.2f}x", _f(ft["train_images_per_second"], 1),
                     _f(at["train_images_per_second"], 1), str(ft["epochs"])])  # fmt: skip
    return rows


# ---- plots
def plot_pareto(results: dict[str, Any], path: Path) -> Path | None:
    """mAP50-95 against single-frame p50 latency, one panel per destination; Fast and Accurate of each
    task joined by a line."""
    dests = results.get("destinations", [])
    if not dests:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(dests), figsize=(5.2 * len(dests), 4.4), squeeze=False)
    for ax, dest in zip(axes[0], dests, strict=True):
        for k, (name, t) in enumerate(results["tasks"].items()):
            pts = []
            for size, e in t["sizes"].items():
                s = e.get("speed", {}).get(dest)
                if s and e["metrics"]["map"] is not None:
                    pts.append((s["single"]["p50_ms"], e["metrics"]["map"], size))
            if not pts:
                continue
            color = f"C{k}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=color, alpha=0.5)
            for x, y, size in pts:
                ax.plot(x, y, "o" if size == "fast" else "s", color=color, ms=8)
                ax.annotate(f"{name} {size}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set(xlabel="p50 latency, one frame at a time (ms)", ylabel="test mAP50-95",
               title=DEST_NAMES.get(dest, dest))  # fmt: skip
        ax.grid(True, alpha=0.3)
    fig.suptitle("Accuracy vs latency (circles: Fast, squares: Accurate; up and left is better)")
    return save(fig, path)


def plot_training(results: dict[str, Any], path: Path) -> Path | None:
    """Validation mAP50-95 against cumulative training time, one panel per task."""
    tasks = [(n, t) for n, t in results["tasks"].items() if any(e["train"].get("history") for e in t["sizes"].values())]
    if not tasks:
        return None
    plt = pyplot()
    cols = min(3, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(tasks) :]:
        ax.axis("off")
    for ax, (name, t) in zip(axes.flat, tasks, strict=False):
        for size, e in t["sizes"].items():
            hist = e["train"].get("history") or []
            xs, ys, clock = [], [], 0.0
            for h in hist:
                clock += h.get("seconds") or 0.0
                if h.get("map") is not None:
                    xs.append(clock)
                    ys.append(h["map"])
            ax.plot(xs, ys, marker=".", label=size)
        ax.set(title=name, xlabel="training time (s)", ylabel="valid mAP50-95")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Training curves: validation mAP50-95 against wall-clock training time")
    return save(fig, path)


def plot_accuracy(results: dict[str, Any], path: Path) -> Path | None:
    rows = accuracy_table(results)[1:]
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(rows) + 2), 3.8))
    xs = range(len(rows))
    for k, (col, label) in enumerate(((5, "Fast"), (6, "Accurate"))):
        ax.bar([x + (k - 0.5) * 0.38 for x in xs], [float(r[col]) for r in rows], 0.38, label=label)
    ax.set_xticks(list(xs), [r[0] for r in rows])
    ax.set(ylabel="test mAP50-95", title="Accuracy per task")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    return save(fig, path)


# ---- the document
def blocks(results: dict[str, Any], plots: dict[str, Path | None]) -> list[Block]:
    rec = recommend(results)
    cfg, prov = results["config"], results["provenance"]
    dest = rec["destination"]
    b = [Block("h1", "speedmap study: Fast or Accurate?")]
    if not results.get("complete"):
        b.append(Block("p", "**This study is incomplete** (interrupted or still running): rerun the same command "
                            "to continue; finished steps are reused."))  # fmt: skip
    b.append(Block("h2", "Recommendation"))
    if dest:
        want = [f"{k.replace('_', ' ')} {cfg[k]:g}" for k in ("min_fps", "max_latency_ms", "min_map") if cfg.get(k)]
        b.append(Block("p", f"For deployment on the **{DEST_NAMES.get(dest, dest)}**"
                            + (f" with {', '.join(want)}" if want else " (no constraints given: --min-fps, "
                               "--max-latency-ms, --min-map)") + ":"))  # fmt: skip
        b.append(Block("list", [f"**{c['task']}: deploy {c['size'].capitalize()}.** " + " ".join(c["reasons"])
                                for c in rec["choices"]]))  # fmt: skip
        others = {d: v for d, v in rec["per_destination"].items() if d != dest}
        if others:
            b.append(Block("list", [f"On the {DEST_NAMES.get(d, d)}: " + ", ".join(f"{t} → {s.capitalize()}"
                                    for t, s in v.items()) for d, v in others.items()]))  # fmt: skip
        supported = [r for r in rec["rules"] if r["supported"]]
        unsupported = [r for r in rec["rules"] if not r["supported"]]
        if supported:
            b.append(Block("p", "The general rules these measurements support:"))
            b.append(Block("list", [f"{r['rule']} {r['evidence']}" for r in supported]))
        if unsupported:
            b.append(Block("p", "Rules of thumb these measurements do **not** support on this data:"))
            b.append(Block("list", [f"{r['rule']} {r['evidence']}" for r in unsupported]))
    b.append(Block("h2", "1. Accuracy (test split, scored through the exported ONNX model)"))
    b.append(Block("table", accuracy_table(results)))
    b.append(Block("p", f"Saturated: a size reaches mAP50 {SATURATED_MAP50:.0%} or more. Differences under one "
                        "mAP50-95 point are within what a small test split can tell apart."))  # fmt: skip
    if plots.get("accuracy"):
        b.append(Block("image", plots["accuracy"], "Accuracy per task"))
    b.append(Block("h2", "2. Inference speed per destination"))
    b.append(Block("table", relative_speed_rows(results), "Fast vs Accurate, median (range) over tasks"))
    for d in results.get("destinations", []):
        b.append(Block("p", f"**{DEST_NAMES.get(d, d)}**"))
        b.append(Block("table", speed_table(results, d)))
    b.append(Block("p", "Latency is end to end for the destination: for HTTP, posting a base64 image and "
                        "getting JSON back over loopback; in-process, decode to detections; in the browser, "
                        "the page's own timing from encoded image to detections. 'many in flight' is a closed "
                        "loop with that many requests outstanding."))  # fmt: skip
    b.append(Block("h2", "3. Training time"))
    b.append(Block("table", training_rows(results)))
    b.append(Block("h2", "4. Accuracy against latency, and training curves"))
    for key, cap in (("pareto", "mAP50-95 against single-frame latency per destination"),
                     ("training", "Validation mAP50-95 during training")):  # fmt: skip
        if plots.get(key):
            b.append(Block("image", plots[key], cap))
    b.append(Block("h2", "5. Provenance"))
    names = {"wall_seconds": "this invocation's wall time (s)", "steps_seconds": "time of all steps, cached ones "
             "included (s)", "usable_cpus": "usable cpus", "providers": "ONNX Runtime providers"}  # fmt: skip
    b.append(Block("list", [f"{names.get(k, k)}: {v}" for k, v in prov.items() if k != "command"]))
    b.append(Block("p", "Configuration:"))
    b.append(Block("code", "\n".join(f"{k} = {v}" for k, v in cfg.items())))
    b.append(Block("p", "Reproduce (finished steps are reused; delete the folder to start over):"))
    b.append(Block("code", prov.get("command") or "speedmap compare"))
    return b


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
            body.append(f"<table>{cap}<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                        + "</table>")  # fmt: skip
        elif b.kind == "image":
            data = base64.b64encode(Path(b.content).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")  # fmt: skip
        elif b.kind == "code":
            body.append(f"<pre>{html.escape(b.content)}</pre>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em;"
             "text-align:right}td:first-child,th:first-child{text-align:left}caption{font-style:italic;padding:.3em}"
             "img{max-width:100%}pre{background:#f4f4f4;padding:.8em;overflow-x:auto}"
             "figcaption{color:#555}")  # fmt: skip
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>speedmap study</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")  # fmt: skip


def write_report(results: dict[str, Any], folder: Path) -> dict[str, Path]:
    """``report.md``, ``report.html`` and the PNG plots in ``folder``; returns their paths."""
    plots = {"accuracy": plot_accuracy(results, folder / "accuracy.png"),
             "pareto": plot_pareto(results, folder / "pareto.png"),
             "training": plot_training(results, folder / "training_curves.png")}  # fmt: skip
    bl = blocks(results, plots)
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(to_markdown(bl, folder), encoding="utf-8")
    page.write_text(to_html(bl), encoding="utf-8")
    return {"markdown": md, "html": page, **{k: v for k, v in plots.items() if v is not None}}
