"""``speedmap predict``: run an exported model on images, folders, globs and videos."""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.markup import escape

from speedmap.cli.common import clean_errors, err, progress_bar
from speedmap.errors import MissingExtra, SpeedmapError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def expand_sources(sources: list[str]) -> tuple[list[Path], list[str]]:
    """Files from paths, folders (their images, sorted) and globs; plus the sources that matched nothing."""
    files: list[Path] = []
    seen: set[Path] = set()
    missing: list[str] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
        elif p.is_file():
            found = [p]
        else:
            found = [Path(m) for m in sorted(glob.glob(s, recursive=True)) if Path(m).is_file()]
        if not found:
            missing.append(s)
        for f in found:  # a file named twice (folder and glob) is done once
            if f.resolve() not in seen:
                seen.add(f.resolve())
                files.append(f)
    return files, missing


def _unique(out: Path, name: str, used: set[str]) -> Path:
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, k = name, 2
    while candidate in used:
        candidate, k = f"{stem}_{k}{suffix}", k + 1
    used.add(candidate)
    return out / candidate


def _frames(path: Path) -> Iterator[tuple[int, object, float]]:
    """``(index, BGR frame, frames per second)`` of a video."""
    try:
        import cv2
    except ImportError as exc:
        raise MissingExtra("reading video (OpenCV)", "train", exc) from None
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SpeedmapError(f"{path}: not a readable video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield i, frame, fps
            i += 1
    finally:
        cap.release()


@clean_errors
def predict_command(
    model: str = typer.Argument(..., help="Exported model: folder or project/version id."),
    sources: list[str] = typer.Argument(..., help="Images, folders, globs or video files."),
    out: Path = typer.Option(Path("runs/predict"), "--out", help="Folder for annotated images and JSON."),
    conf: float = typer.Option(0.25, "--conf", min=0.0, max=1.0, help="Confidence threshold."),
    iou: float = typer.Option(0.45, "--iou", min=0.0, max=1.0, help="NMS IoU threshold."),
    max_det: int = typer.Option(300, "--max-det", min=1),
    save_json: bool = typer.Option(False, "--save-json", help="Also write the detections per image (JSON)."),
    no_images: bool = typer.Option(False, "--no-images", help="Do not write annotated images."),
    models_dir: Path | None = typer.Option(None, "--models", help="Model store for ids (default ./models)."),
    providers: str | None = typer.Option(None, "--providers", help="ONNX Runtime providers, e.g. cpu or cuda."),
) -> None:
    """Detect objects and write annotated images (and JSON). Unreadable files are reported and
    skipped; the exit code is 1 when any input failed."""
    from speedmap.annotate import annotate
    from speedmap.engine import Model

    engine = Model.load(model, providers=providers, models_dir=models_dir)
    files, missing = expand_sources(sources)
    for m in missing:
        err.print(f"[yellow]skipped:[/] {escape(m)}: no such file, folder or glob match", highlight=False)
    if not files:
        raise SpeedmapError("no input files found")
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    failed, n_boxes = 0, 0
    kw = {"conf": conf, "iou": iou, "max_det": max_det}
    with progress_bar("predicting") as update:
        for k, path in enumerate(files):
            try:
                if path.suffix.lower() in VIDEO_EXTS:
                    n_boxes += _video(engine, path, _unique(out, path.stem + ".mp4", used), save_json, no_images, kw)
                else:
                    prepared = engine.prepare(path)
                    det = engine.finish(engine.forward([prepared.square])[0], prepared, **kw)
                    n_boxes += len(det)
                    if not no_images:
                        annotate(prepared.image, det).save(_unique(out, path.stem + ".jpg", used), quality=90)
                    if save_json:
                        doc = {"file": str(path), **det.to_roboflow()}
                        _unique(out, path.stem + ".json", used).write_text(json.dumps(doc) + "\n")
            except (SpeedmapError, ValueError, OSError) as exc:
                failed += 1
                err.print(f"[yellow]skipped:[/] {escape(str(path))}: {escape(str(exc))}", highlight=False)
            update(k + 1, len(files))
    summary = f"{len(files) - failed} of {len(files)} files done, {n_boxes} detections; results in {escape(str(out))}"
    if failed:
        summary += f"; [red]{failed} failed[/]"
    if missing:
        summary += f"; [red]{len(missing)} source(s) matched nothing[/]"
    err.print(summary, highlight=False)
    if failed or missing:
        raise typer.Exit(1)


def _video(engine: object, path: Path, dst: Path, save_json: bool, no_images: bool, kw: dict) -> int:
    import cv2
    import numpy as np

    from speedmap.annotate import annotate

    writer, frames, n = None, [], 0
    try:
        for i, frame, fps in _frames(path):
            prepared = engine.prepare(frame, channels="bgr")  # type: ignore[attr-defined]
            det = engine.finish(engine.forward([prepared.square])[0], prepared, **kw)  # type: ignore[attr-defined]
            n += len(det)
            if save_json:
                frames.append({"frame": i, **det.to_roboflow()})
            if not no_images:
                drawn = np.asarray(annotate(prepared.image, det))[:, :, ::-1]
                if writer is None:
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                writer.write(np.ascontiguousarray(drawn))
    finally:
        if writer is not None:
            writer.release()
    if save_json:
        dst.with_suffix(".json").write_text(json.dumps({"file": str(path), "frames": frames}) + "\n")
    return n
