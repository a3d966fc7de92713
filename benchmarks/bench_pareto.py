"""The latency-accuracy front on CPU (issue 17): candidate architectures of the detector family against
Ultralytics YOLO11n/YOLO11s ONNX files, measured side by side in one run.

    python benchmarks/bench_pareto.py --peers yolo11n=runs/peer/yolo11n.onnx,yolo11s=runs/peer/yolo11s.onnx \
        [--tasks crowd,tiny,clutter] [--epochs 10] [--images 600] [--candidates fast,fast-relu,...] [--latency-only]
        [--int8] [--input-sizes 224,192] [--seed N] [--tag TAG] [--lr-scale X] [--profile]

For each task and candidate it trains (or reuses the run folder when it holds as many epochs), exports to
ONNX (BatchNorms and RepConv branches fused, as `speedmap export` does), and scores the test split through
the engine. Latency: every candidate's ONNX graph and the peers' in ONNX Runtime, batch 1, the same input
size and threads, timed in interleaved rounds (order reversed every round), median per model. `--int8`
adds each candidate quantized as `speedmap export --int8` does; `--input-sizes` each trained candidate
exported at smaller inputs (not retrained); `--seed` trains with another seed (the run-to-run spread);
`--lr-scale` trains with AdamW at that multiple of the automatic initial learning rate. Writes
`pareto.md` (the table), `pareto.json` and `pareto.png` (mAP50-95 against p50 latency; with --latency-only,
`latency.png`: p50 latency against GFLOPs) into --out.

Peer files come from a scratch virtualenv (`YOLO("yolo11n.yaml").export(format="onnx", imgsz=256,
opset=17, simplify=True)`); nothing of Ultralytics is imported here or by speedmap.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from harness import machine_line

from speedmap.models import SIZES, SizeSpec, count_flops, count_params, create_model, register_size
from speedmap.plotting import pyplot, save
from speedmap.runtime import session_options

# Candidates: (name, spec). "fast" and "accurate" are today's registered sizes (the baselines).
CANDIDATES: dict[str, SizeSpec] = {
    "fast-relu": SizeSpec(0.33, 0.25, act="relu"),
    "fast-hybrid": SizeSpec(0.33, 0.25, act="relu", deep_act="silu"),  # SiLU only at stride 16 and 32
    "fast-early-relu": SizeSpec(0.33, 0.25, early_act="relu"),  # ReLU at stride 2 and 4 (MobileNetV3-style)
    "fast-lrelu": SizeSpec(0.33, 0.25, act="lrelu"),
    "fast-relu6": SizeSpec(0.33, 0.25, act="relu6"),
    "fast-relu-w38": SizeSpec(0.33, 0.375, act="relu"),
    "fast-w19": SizeSpec(0.33, 0.1875),  # SiLU, narrower: 16-24-48-96-192 channels
    "fast-w22": SizeSpec(0.33, 0.21875),  # SiLU, 16-32-56-112-224 channels
    "fast-d1": SizeSpec(0.17, 0.25),  # SiLU, one block per stage
    "fast-w19-d1": SizeSpec(0.17, 0.1875),
    "fast-w12-d1": SizeSpec(0.17, 0.125),  # SiLU, 8-16-32-64-128 channels, one block per stage: a floor
    "fast-w19-d1-deeprelu": SizeSpec(0.17, 0.1875, deep_act="relu"),  # SiLU at stride 2-8 only
    "fast-p4": SizeSpec(0.33, 0.25, levels=2),  # two detection levels (strides 8, 16): no stride-32 stage
    "fast-w19-p4": SizeSpec(0.33, 0.1875, levels=2),
    "fast-relu-p4": SizeSpec(0.33, 0.25, act="relu", levels=2),
    "fast-relu-silucls": SizeSpec(0.33, 0.25, act="relu", cls_act="silu"),  # is ReLU's clutter loss the class branch?
    "fast-relu-d67": SizeSpec(0.67, 0.25, act="relu"),
    "fast-relu-r8": SizeSpec(0.33, 0.25, act="relu", reg_max=8),
    "fast-relu-r8-sep": SizeSpec(0.33, 0.25, act="relu", reg_max=8, box="separable"),
    "fast-hswish-r8": SizeSpec(0.33, 0.25, act="hardswish", reg_max=8),
    "fast-rep": SizeSpec(0.33, 0.25, block="rep", act="relu", reg_max=8),
    "fast-rep-sep": SizeSpec(0.33, 0.25, block="rep", act="relu", reg_max=8, box="separable"),
    "fast-rep-d1": SizeSpec(0.17, 0.25, block="rep", act="relu", reg_max=8, box="separable"),
    "fast-rep-w19": SizeSpec(0.33, 0.1875, block="rep", act="relu", reg_max=8, box="separable"),
    "fast-rep-w19-d1": SizeSpec(0.17, 0.1875, block="rep", act="relu", reg_max=8, box="separable"),
    "accurate-relu": SizeSpec(0.33, 0.50, act="relu"),
    "accurate-relu-r8": SizeSpec(0.33, 0.50, act="relu", reg_max=8),
    "accurate-rep": SizeSpec(0.33, 0.50, block="rep", act="relu", reg_max=8),
    "accurate-rep-sep": SizeSpec(0.33, 0.50, block="rep", act="relu", reg_max=8, box="separable"),
}
for _name, _spec in CANDIDATES.items():
    register_size(_name, _spec)


def export_onnx(run: Path | None, size: str, nc: int, imgsz: int, dst: Path) -> Path:
    """The candidate's graph: from its run's best checkpoint, or untrained (latency only)."""
    import torch

    from speedmap.export import export_model
    from speedmap.export.onnx import trace_to_onnx

    if run is not None:
        return export_model(run, dst, imgsz=imgsz, log=lambda m: None).onnx
    dst.mkdir(parents=True, exist_ok=True)
    model = create_model(size, nc).eval().fuse()  # what export_model traces: fused, the grid fixed
    model.head.fix_anchors(imgsz)
    path = dst / "model.onnx"
    trace_to_onnx(model, torch.zeros(1, 3, imgsz, imgsz), path, dynamic=False)
    return path


def session(path: Path, threads: int) -> ort.InferenceSession:
    """The engine's settings (speedmap.runtime.session_options), for our graphs and the peers' alike."""
    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def interleaved_latency(paths: dict[str, Path], imgsz: int, threads: int, rounds: int, n: int) -> dict[str, float]:
    """Median ms per forward pass (batch 1) of each graph, timed in alternating-order rounds."""
    rng = np.random.default_rng(0)
    sessions = {k: session(p, threads) for k, p in paths.items()}
    feeds = {
        k: {s.get_inputs()[0].name: rng.random(_input_shape(s, imgsz), dtype=np.float32)} for k, s in sessions.items()
    }
    for k, s in sessions.items():
        for _ in range(10):
            s.run(None, feeds[k])
    times: dict[str, list[float]] = {k: [] for k in sessions}
    names = list(sessions)
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            for _ in range(n):
                sessions[k].run(None, feeds[k])
            times[k].append((time.perf_counter() - t) / n * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _input_shape(s: ort.InferenceSession, imgsz: int) -> tuple[int, int, int, int]:
    """Batch 1 at the graph's own input size (exports at other sizes), else ``imgsz``."""
    h, w = s.get_inputs()[0].shape[2:]
    return 1, 3, h if isinstance(h, int) else imgsz, w if isinstance(w, int) else imgsz


def op_profile(path: Path, imgsz: int, threads: int, runs: int = 50) -> list[tuple[str, float, int]]:
    """ONNX Runtime's kernel time per op type of the optimised graph: (op, ms per run, nodes), largest first."""
    opts = session_options(threads)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(path.parent / "ort-profile")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random(_input_shape(sess, imgsz), dtype=np.float32)
    for _ in range(runs):
        sess.run(None, {sess.get_inputs()[0].name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    total: dict[str, float] = {}
    nodes: dict[str, int] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            total[op] = total.get(op, 0.0) + e["dur"] / 1e3 / runs
            nodes[op] = nodes.get(op, 0) + 1
    return sorted(((op, ms, nodes[op] // runs) for op, ms in total.items()), key=lambda t: -t[1])


def untrained_int8(onnx: Path, size: str, args: argparse.Namespace) -> Path:
    """An untrained graph in int8 (static QDQ calibrated on 32 crowd images, the size's ``int8_float``
    kept in float): for its latency only, as kernel time does not depend on the weights' values."""
    from speedmap.data.tasks import make_task
    from speedmap.export.quantize import quantize_int8

    data = make_task("crowd", args.out / "data" / "crowd", images=args.images, imgsz=args.imgsz)
    dst = onnx.with_name("model-int8.onnx")
    quantize_int8(onnx, dst, data, args.imgsz, n=32, log=lambda m: None, float_modules=SIZES[size].int8_float)
    return dst


def train_and_score(size: str, task: str, args: argparse.Namespace) -> dict[str, Any]:
    from speedmap.data import load_dataset
    from speedmap.data.tasks import make_task
    from speedmap.engine import Model
    from speedmap.eval.model import evaluate_model
    from speedmap.export import export_model
    from speedmap.train.config import TrainConfig
    from speedmap.train.schedule import auto_adamw_lr
    from speedmap.train.trainer import train

    data = make_task(task, args.out / "data" / task, images=args.images, imgsz=args.imgsz)
    run = args.out / "runs" / f"{task}-{size}{run_suffix(args)}"
    record = run / "train.json"
    if not record.is_file() or json.loads(record.read_text())["epochs_run"] < args.epochs:
        recipe: dict[str, Any] = {}
        if args.lr_scale != 1:  # the rate "auto" would give AdamW on this dataset, scaled
            recipe = {"optimizer": "adamw", "lr0": auto_adamw_lr(len(load_dataset(data).classes)) * args.lr_scale}
        cfg = TrainConfig(
            data=str(data),
            size=size,
            epochs=args.epochs,
            imgsz=args.imgsz,
            batch=args.batch,
            out=str(run),
            seed=args.seed,
            **recipe,
        )
        train(cfg, log=lambda m: None)
    rec = json.loads(record.read_text())
    onnx = export_onnx(run, size, 0, args.imgsz, args.out / "models" / task / run.name.removeprefix(f"{task}-"))
    test = load_dataset(data).split("test")
    m = evaluate_model(Model.load(onnx.parent, threads=args.threads), test).metrics
    out = {"map": m.map, "map50": m.map50, "train_images_per_second": rec["train_images_per_second"], "onnx": onnx}
    out["variants"] = {}
    # the same run exported otherwise, scored the same way; always exported again (like the fp32 graph),
    # so that a folder left by older export code is never timed as if it were today's
    for suffix, kw in variants(args, data, size).items():
        folder = onnx.parent.with_name(f"{onnx.parent.name}{suffix}")
        export_model(run, folder, evaluate=False, log=lambda m: None, **kw)
        mv = evaluate_model(Model.load(folder, threads=args.threads), test).metrics
        out["variants"][suffix] = {"map": mv.map, "map50": mv.map50, "onnx": folder / "model.onnx"}
    return out


def run_suffix(args: argparse.Namespace) -> str:
    """What tells this invocation's runs from others of the same candidate: the seed, --tag and --lr-scale."""
    return (
        (f"-seed{args.seed}" if args.seed else "")
        + (f"-{args.tag}" if args.tag else "")
        + (f"-lr{args.lr_scale:g}" if args.lr_scale != 1 else "")
    )


def variants(args: argparse.Namespace, data: Path, size: str) -> dict[str, dict[str, Any]]:
    """Other exports of each trained candidate: int8 (static QDQ on 128 training images, as
    `speedmap export --int8` does; for a size that keeps modules in float, also "-int8-all" with those
    quantized too) and smaller input sizes (the model trained at --imgsz, run at S)."""
    out: dict[str, dict[str, Any]] = {}
    if args.int8:
        out["-int8"] = {"imgsz": args.imgsz, "int8": data, "calib_images": 128}
        if SIZES[size].int8_float:
            out["-int8-all"] = {**out["-int8"], "int8_float": ()}
    for s in args.input_sizes:
        out[f"@{s}"] = {"imgsz": s}
    return out


def plot(rows: list[dict[str, Any]], peers: dict[str, float], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        if r.get("map") is None:
            continue
        base = r["name"].split("@")[0].split("-int8")[0]
        ax.scatter(
            r["ms"],
            r["map"],
            color="tab:red" if base in ("fast", "accurate") else "tab:blue",
            marker="s" if "-int8" in r["name"] else "o",
        )
        ax.annotate(r["name"], (r["ms"], r["map"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for name, ms in peers.items():
        ax.axvline(ms, color="grey", ls="--", lw=1)
        ax.text(ms, ax.get_ylim()[0], f" {name}", rotation=90, va="bottom", fontsize=8, color="grey")
    ax.set(xlabel="ONNX Runtime p50 ms per image (batch 1)", ylabel="test mAP50-95 (mean over tasks)")
    ax.set_title("Latency-accuracy front (red: today's sizes; squares: int8)")
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_latency(rows: list[dict[str, Any]], peers: dict[str, float], path: Path) -> Path:
    """Latency only: p50 against GFLOPs, fp32 and int8, SiLU and other activations apart."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        spec = SIZES[r["name"].removesuffix("-int8")]
        silu = {spec.act, spec.deep_act or spec.act, spec.early_act or spec.act, spec.cls_act or spec.act} == {"silu"}
        ax.scatter(
            r["gflops"],
            r["ms"],
            color="tab:red" if silu else "tab:blue",
            marker="s" if r["name"].endswith("-int8") else "o",
        )
        ax.annotate(r["name"], (r["gflops"], r["ms"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for name, ms in peers.items():
        ax.axhline(ms, color="grey", ls="--", lw=1)
        ax.text(ax.get_xlim()[0], ms, f" {name}", va="bottom", fontsize=8, color="grey")
        ax.axhline(ms / 2, color="grey", ls=":", lw=1)
        ax.text(ax.get_xlim()[0], ms / 2, f" half of {name}", va="bottom", fontsize=8, color="grey")
    ax.set(xlabel="GFLOPs (as exported)", ylabel="ONNX Runtime p50 ms per image (batch 1)")
    ax.set_title("Untrained graphs (red: SiLU throughout, blue: another activation somewhere; squares: int8)")
    ax.grid(alpha=0.3)
    return save(fig, path)


def table(rows: list[dict[str, Any]], peers: dict[str, float], tasks: list[str]) -> str:
    n_ms, s_ms = peers.get("yolo11n"), peers.get("yolo11s")
    head = ["model", "GFLOPs", "params M", "p50 ms", "vs YOLO11n", "vs YOLO11s", *[f"{t} mAP50-95" for t in tasks]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["name"],
            f"{r['gflops']:.2f}" if r.get("gflops") else "",
            f"{r['params'] / 1e6:.2f}" if r.get("params") else "",
            f"{r['ms']:.2f}",
            f"{r['ms'] / n_ms:.2f}x" if n_ms else "",
            f"{r['ms'] / s_ms:.2f}x" if s_ms else "",
            *[f"{r['tasks'][t]['map']:.3f}" if t in r.get("tasks", {}) else "" for t in tasks],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _positive(v: str) -> float:
    x = float(v)
    if not x > 0:  # also NaN; a rate of 0 would silently train at the automatic rate (lr0 0 means "unset")
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {v}")
    return x


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", default=",".join(["fast", *CANDIDATES, "accurate"]))
    ap.add_argument("--tasks", default="crowd,tiny,clutter")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="Training seed (run-to-run spread; runs get a -seedN suffix).")
    ap.add_argument(
        "--tag", default="", help="Runs get a -TAG suffix: train again (e.g. after a recipe change) beside older runs."
    )
    ap.add_argument(
        "--lr-scale", type=_positive, default=1.0, help="Train with AdamW at X times the automatic initial rate (-lrX)."
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--n", type=int, default=20, help="Forward passes per model per round.")
    ap.add_argument("--peers", default="", help="name=path.onnx,... (YOLO11 files exported in a scratch venv)")
    ap.add_argument("--latency-only", action="store_true", help="Untrained graphs: latency and FLOPs only.")
    ap.add_argument("--int8", action="store_true", help="Also each candidate in int8 (static QDQ).")
    ap.add_argument(
        "--input-sizes",
        type=lambda v: [int(s) for s in v.split(",") if s],
        default=[],
        help="Also each trained candidate exported at these input sizes, e.g. 224,192 (not retrained).",
    )
    ap.add_argument("--profile", action="store_true", help="Print ORT's kernel time per op type of each graph.")
    ap.add_argument("--out", type=Path, default=Path("runs/pareto"))
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    names = [c for c in args.candidates.split(",") if c]
    tasks = [] if args.latency_only else [t for t in args.tasks.split(",") if t]
    unknown = [c for c in names if c not in SIZES]
    if unknown:
        raise SystemExit(f"unknown candidates {unknown}; known: {', '.join(SIZES)}")
    print(machine_line(f"{args.imgsz} px"))
    rows: list[dict[str, Any]] = []
    for name in names:
        model = create_model(name, 3).eval().fuse()  # as exported: RepConv branches folded
        row: dict[str, Any] = {
            "name": name + (run_suffix(args) if tasks else ""),
            "params": count_params(model),
            "gflops": count_flops(model, args.imgsz) / 1e9,
        }
        row["tasks"] = {}
        for task in tasks:
            t0 = time.perf_counter()
            # in a fresh process each: training in a process that already ran ONNX Runtime sessions crashed
            # here once (glibc "double free"), and a child also starts from clean thread pools
            # (a process pool's future fails with BrokenProcessPool if the child dies, where Pool would wait forever)
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                row["tasks"][task] = pool.submit(train_and_score, name, task, args).result()
            print(f"{task:8s} {name:18s} mAP50-95 {row['tasks'][task]['map']:.3f}  ({time.perf_counter() - t0:.0f} s)")
        onnx = (
            row["tasks"][tasks[0]]["onnx"]
            if tasks
            else export_onnx(None, name, 3, args.imgsz, args.out / "graphs" / name)
        )
        row["onnx"] = onnx
        row["map"] = statistics.mean(r["map"] for r in row["tasks"].values()) if tasks else None
        rows.append(row)
        if args.int8 and not tasks:  # latency only: the untrained graph quantized as export --int8 does
            rows.append({**row, "name": f"{name}-int8", "onnx": untrained_int8(Path(onnx), name, args)})
        for suffix in row["tasks"][tasks[0]]["variants"] if tasks else []:
            per_task = {t: r["variants"][suffix] for t, r in row["tasks"].items()}
            v = {**row, "name": f"{row['name']}{suffix}", "tasks": per_task, "onnx": per_task[tasks[0]]["onnx"]}
            rows.append(v | {"map": statistics.mean(r["map"] for r in per_task.values())})
    peer_paths = dict(p.split("=", 1) for p in args.peers.split(",") if p)
    paths = {r["name"]: Path(r["onnx"]) for r in rows} | {k: Path(v) for k, v in peer_paths.items()}
    ms = interleaved_latency(paths, args.imgsz, args.threads, args.rounds, args.n)
    for r in rows:
        r["ms"] = ms[r["name"]]
    peers = {k: ms[k] for k in peer_paths}
    if args.profile:
        for name, path in paths.items():
            ops = op_profile(path, args.imgsz, args.threads)
            print(f"{name}: " + ", ".join(f"{op} {t:.2f} ms ({n} nodes)" for op, t, n in ops[:8]))
    args.out.mkdir(parents=True, exist_ok=True)
    md = table(rows, peers, tasks)
    md += "\n\n" + "\n".join(f"| {k} (peer) | | | {v:.2f} | | | |" for k, v in peers.items())
    (args.out / "pareto.md").write_text(md + "\n")
    for r in rows:
        r["onnx"] = str(r["onnx"])
        for t in r["tasks"].values():
            t["onnx"] = str(t["onnx"])
            t.pop("variants", None)
    (args.out / "pareto.json").write_text(json.dumps({"rows": rows, "peers": peers, "args": vars(args)}, default=str))
    if tasks:
        plot(rows, peers, args.out / "pareto.png")
    else:
        plot_latency(rows, peers, args.out / "latency.png")
    print(md)


if __name__ == "__main__":
    main()
