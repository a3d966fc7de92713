"""Engine performance on CPU: latency breakdown (decode / preprocess / forward / postprocess) for both
sizes, throughput vs batch size, JPEG decoders, NMS inside vs outside the graph, int8 vs fp32, and
`fast` vs `accurate` (and optionally Ultralytics YOLO11 ONNX files) side by side in one run.

    python benchmarks/bench_engine.py --runs fast=runs/bench-accuracy/clutter-fast,accurate=runs/bench-accuracy/clutter-accurate \
        --data runs/bench-accuracy/data/clutter [--peer yolo11n=/tmp/peer/y11n.onnx,yolo11s=/tmp/peer/y11s.onnx]

Peer ONNX files are only timed (ONNX Runtime, same threads and input size); nothing of theirs is imported.
"""  # noqa: E501

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from harness import machine_line
from PIL import Image

from speedmap.data import load_dataset
from speedmap.engine import Model
from speedmap.imageio import read_image
from speedmap.imagepixels import jpeg_decoder_name
from speedmap.modelstore import read_meta
from speedmap.postprocess import postprocess
from speedmap.preprocess import letterbox, to_input
from speedmap.runtime import session_options


def med_ms(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean time of ``n`` calls, in ms."""
    fn()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n * 1e3)
    return statistics.median(out)


def export_all(runs: dict[str, Path], data: Path, out: Path) -> dict[str, Path]:
    from speedmap.export import export_model

    models = {}
    for name, run in runs.items():
        for variant, kw in (("", {}), ("-int8", {"int8": data, "calib_images": 128})):
            folder = out / "models" / "bench" / f"{name}{variant}"
            if not (folder / "model.json").is_file():
                export_model(run, folder, log=lambda m: None, **kw)
            models[f"{name}{variant}"] = folder
    return models


def breakdown(model: Model, blobs: list[bytes], rounds: int = 3) -> dict[str, float]:
    """Median per-image ms of each stage, one image at a time, over all images ``rounds`` times."""
    stages: dict[str, list[float]] = {"decode": [], "preprocess": [], "forward": [], "postprocess": []}
    for _ in range(rounds):
        for b in blobs:
            t0 = time.perf_counter()
            rgb = read_image(b)
            t1 = time.perf_counter()
            sq, lb = letterbox(rgb, model.imgsz)
            x = to_input([sq])
            t2 = time.perf_counter()
            pred = model.session.run(None, {"images": x})[0][0]
            t3 = time.perf_counter()
            det = postprocess(pred, conf=0.25, iou=0.45)
            lb.to_original(det.xyxy)
            t4 = time.perf_counter()
            for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                stages[k].append(v * 1e3)
    return {k: statistics.median(v) for k, v in stages.items()}


def nms_graph(src: Path, dst: Path, iou: float, conf: float, max_det: int = 300) -> None:
    """The same model with ONNX NonMaxSuppression appended (per class, over all class scores)."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(str(src))
    g = m.graph
    c = [
        helper.make_tensor(n, TensorProto.INT64, [len(v)], v)
        for n, v in (("s0", [0]), ("s4", [4]), ("sbig", [1 << 30]), ("ax2", [2]))
    ]
    g.initializer.extend(c)
    g.initializer.extend(
        [
            helper.make_tensor("max_out", TensorProto.INT64, [1], [max_det]),
            helper.make_tensor("iou_t", TensorProto.FLOAT, [1], [iou]),
            helper.make_tensor("conf_t", TensorProto.FLOAT, [1], [conf]),
        ]
    )
    g.node.extend(
        [
            helper.make_node("Slice", ["output", "s0", "s4", "ax2"], ["boxes"]),
            helper.make_node("Slice", ["output", "s4", "sbig", "ax2"], ["scores_bnc"]),
            helper.make_node("Transpose", ["scores_bnc"], ["scores"], perm=[0, 2, 1]),
            helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou_t", "conf_t"], ["selected"]),
        ]
    )
    del g.output[:]
    g.output.extend(
        [
            helper.make_tensor_value_info("selected", TensorProto.INT64, ["k", 3]),
            helper.make_tensor_value_info("output", TensorProto.FLOAT, None),
        ]
    )
    onnx.save(m, str(dst))


def nms_only_graph(dst: Path, iou: float, conf: float, max_det: int = 300) -> None:
    """Just ONNX NonMaxSuppression on the head output (input ``output``): its cost without the forward."""
    import onnx
    from onnx import TensorProto, helper

    inits = [
        helper.make_tensor(n, TensorProto.INT64, [1], [v])
        for n, v in (("s0", 0), ("s4", 4), ("sbig", 1 << 30), ("ax2", 2), ("max_out", max_det))
    ]
    inits += [
        helper.make_tensor("iou_t", TensorProto.FLOAT, [1], [iou]),
        helper.make_tensor("conf_t", TensorProto.FLOAT, [1], [conf]),
    ]
    nodes = [
        helper.make_node("Slice", ["output", "s0", "s4", "ax2"], ["boxes"]),
        helper.make_node("Slice", ["output", "s4", "sbig", "ax2"], ["scores_bnc"]),
        helper.make_node("Transpose", ["scores_bnc"], ["scores"], perm=[0, 2, 1]),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou_t", "conf_t"], ["selected"]),
    ]
    inp = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, None, None])
    out = helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])
    graph = helper.make_graph(nodes, "nms", [inp], [out], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(dst))


def session(path: Path, threads: int) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True, help="name=RUN_FOLDER,... (fast and accurate)")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--peer", default="", help="name=ONNX_FILE,... timed only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-engine"))
    args = ap.parse_args()
    runs = {k: Path(v) for k, v in (kv.split("=", 1) for kv in args.runs.split(","))}
    peers = {k: Path(v) for k, v in (kv.split("=", 1) for kv in args.peer.split(",") if kv)}
    print(
        machine_line(f"{args.threads} intra-op threads"),
        flush=True,
    )
    folders = export_all(runs, args.data, args.out)
    models = {k: Model(read_meta(v), threads=args.threads) for k, v in folders.items()}
    recs = load_dataset(args.data).split("test").records
    blobs = [r.path.read_bytes() for r in recs]
    imgsz = next(iter(models.values())).imgsz
    result: dict[str, object] = {"threads": args.threads, "images": len(blobs), "jpeg_decoder": jpeg_decoder_name()}

    # 1. JPEG decoders on the task's images and on larger photo-like images
    rng = np.random.default_rng(0)
    dec: dict[str, dict[str, float]] = {}
    for w, h in ((256, 256), (640, 480), (1280, 720)):
        if (w, h) == (256, 256):
            data = blobs[0]
        else:
            small = Image.fromarray(rng.integers(0, 255, (h // 16, w // 16, 3), np.uint8)).resize((w, h), Image.BICUBIC)
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=90)
            data = buf.getvalue()
        row = {}
        for name in ("pil", "cv2", "simplejpeg"):
            os.environ["SPEEDMAP_JPEG_DECODER"] = name
            if jpeg_decoder_name() != name:
                continue
            row[name] = med_ms(lambda d=data: read_image(d), 30)
        os.environ.pop("SPEEDMAP_JPEG_DECODER")
        dec[f"{w}x{h}"] = row
        print(f"decode {w}x{h} JPEG (ms): " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    result["decode_ms"] = dec

    # 2. latency breakdown, one image at a time, fp32 and int8, both sizes; rounds interleaved
    bd: dict[str, dict[str, float]] = {}
    for name, m in models.items():
        bd[name] = breakdown(m, blobs)
        s = bd[name]
        total = sum(s.values())
        share = (s["decode"] + s["preprocess"] + s["postprocess"]) / total
        print(
            f"{name:<14} decode {s['decode']:.2f}  pre {s['preprocess']:.2f}  forward {s['forward']:.2f}  "
            f"post {s['postprocess']:.2f}  total {total:.2f} ms; decode+pre+post {share:.1%}",
            flush=True,
        )
    result["breakdown_ms"] = bd

    # 3. forward latency side by side (interleaved rounds), with peers
    x1 = to_input([letterbox(read_image(blobs[0]), imgsz)[0]])
    sessions = {k: m.session for k, m in models.items()}
    for k, p in peers.items():
        sessions[k] = session(p, args.threads)
    fwd: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(7):
        for k, s in sessions.items():
            name = s.get_inputs()[0].name
            fwd[k].append(med_ms(lambda s=s, name=name: s.run(None, {name: x1}), 10, rounds=1))
    fwd_med = {k: statistics.median(v) for k, v in fwd.items()}
    result["forward_ms"] = fwd_med
    print("forward, batch 1 (median ms): " + "  ".join(f"{k} {v:.2f}" for k, v in fwd_med.items()), flush=True)
    if "fast" in fwd_med and "accurate" in fwd_med:
        print(f"accurate/fast forward latency ratio: {fwd_med['accurate'] / fwd_med['fast']:.2f}x", flush=True)
    for k in ("fast", "accurate"):
        if f"{k}-int8" in fwd_med:
            fp, q = models[k].meta.doc.get("metrics") or {}, models[f"{k}-int8"].meta.doc.get("metrics") or {}
            print(
                f"int8 {k}: forward {fwd_med[k] / fwd_med[k + '-int8']:.2f}x faster; test mAP50-95 "
                f"{fp.get('map', float('nan')):.3f} -> {q.get('map', float('nan')):.3f}, mAP50 "
                f"{fp.get('map50', float('nan')):.3f} -> {q.get('map50', float('nan')):.3f}",
                flush=True,
            )

    # 4. throughput vs batch size (forward + postprocess, letterboxed inputs)
    squares = [letterbox(read_image(b), imgsz)[0] for b in blobs[:16]]
    tp: dict[str, dict[int, float]] = {}
    for k in ("fast", "accurate"):
        tp[k] = {}
        for bs in (1, 2, 4, 8, 16):

            def run(bs: int = bs, m: Model = models[k]) -> None:
                for p in m.session.run(None, {"images": to_input(squares[:bs])})[0]:
                    postprocess(p, conf=0.25, iou=0.45)

            tp[k][bs] = bs / med_ms(run, max(1, 16 // bs)) * 1e3
        print(f"{k} images/s by batch size: " + "  ".join(f"{b}: {v:.0f}" for b, v in tp[k].items()), flush=True)
    result["throughput"] = tp

    # 5. NMS in the graph vs numpy outside, fast model, serving and evaluation thresholds. Three variants
    # interleaved (plain forward, forward with ONNX NonMaxSuppression, forward + numpy postprocess);
    # the NMS cost is each variant minus the plain forward of the same rounds.
    nms_res = {}
    s_out = models["fast"].session
    raw = s_out.run(None, {"images": x1})[0][0]
    for conf, iou in ((0.25, 0.45), (0.001, 0.7)):
        path = args.out / f"fast-nms-{conf}.onnx"
        nms_graph(folders["fast"] / "model.onnx", path, iou, conf)
        s_in = session(path, args.threads)
        rows: dict[str, list[float]] = {"plain": [], "in_graph": [], "outside": []}
        for _ in range(15):
            rows["plain"].append(med_ms(lambda s=s_out: s.run(None, {"images": x1}), 10, rounds=1))
            rows["in_graph"].append(med_ms(lambda s=s_in: s.run(["selected"], {"images": x1}), 10, rounds=1))
            rows["outside"].append(
                med_ms(
                    lambda c=conf, i=iou, s=s_out: postprocess(s.run(None, {"images": x1})[0][0], conf=c, iou=i),
                    10,
                    rounds=1,
                )
            )
        r = {k: statistics.median(v) for k, v in rows.items()}
        r["numpy_nms_alone"] = med_ms(lambda c=conf, i=iou: postprocess(raw, conf=c, iou=i), 50)
        only = args.out / f"nms-only-{conf}.onnx"
        nms_only_graph(only, iou, conf)
        s_only = session(only, args.threads)
        r["onnx_nms_alone"] = med_ms(lambda s=s_only: s.run(None, {"output": raw[None]}), 50)
        nms_res[f"conf{conf}_iou{iou}"] = r
        print(
            f"NMS conf {conf} iou {iou}: forward {r['plain']:.2f} ms; with NMS in graph {r['in_graph']:.2f} "
            f"(+{r['in_graph'] - r['plain']:.2f}); with numpy NMS outside {r['outside']:.2f} "
            f"(+{r['outside'] - r['plain']:.2f}); alone: numpy postprocess {r['numpy_nms_alone']:.2f} ms, ONNX "
            f"NonMaxSuppression {r['onnx_nms_alone']:.2f} ms",
            flush=True,
        )
    result["nms_ms"] = nms_res
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_engine.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
