"""Where an epoch's time goes on real images, per size: building the run (reading and caching the images at the
training size), augmentation and collation (the data loader alone: mosaic epochs and the last, mosaic-free
ones), the optimizer steps (forward, loss, backward, update, EMA) on those very batches, validation, and the
checkpoints, logs and the training plot. Issue 25's levers "where an epoch's time goes" and "validation cost".

    python benchmarks/bench_epoch_split.py /work/data/real/bccd /work/data/real/roadsign [--epochs 2]

Run it alone: it times CPU work. Each part is timed on its own, one after the other, in the trainer's own
objects (speedmap.train.trainer.Trainer), with the trainer's thread and worker counts (on 2 cores the data
loader runs in the training process, so its time adds to the steps'). Prints one markdown row per dataset
and size; the input size is the one `compare` chooses for the dataset (choose_imgsz) unless --imgsz is given.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from speedmap.cpustat import CpuMeter
from speedmap.data.imgsz import choose_imgsz
from speedmap.data.io import load_dataset
from speedmap.train.config import TrainConfig
from speedmap.train.trainer import Trainer


def split_epoch(data: Path, size: str, imgsz: int, epochs: int, batch: int) -> dict[str, float]:
    """Seconds per part, the per-epoch ones averaged over ``epochs`` epochs (mosaic on) plus one without."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cfg = TrainConfig(data=str(data), size=size, epochs=epochs + 11, imgsz=imgsz, batch=batch, out=tmp, seed=0)
        tr = Trainer(cfg, log=lambda _: None)
        out = {"build": time.perf_counter() - t0}
        parts: dict[str, list[float]] = {"augment": [], "steps": [], "validate": [], "save": [], "augment_plain": []}
        for epoch in [*range(epochs), cfg.epochs - 1]:  # the last epoch: mosaic closed
            plain = epoch == cfg.epochs - 1
            t = time.perf_counter()
            batches = list(tr._loader(epoch))
            parts["augment_plain" if plain else "augment"].append(time.perf_counter() - t)
            if plain:
                break
            tr.net.train()
            t, meter = time.perf_counter(), CpuMeter()
            losses = torch.zeros(3)
            for i, (images, targets) in enumerate(batches):
                tr.schedule.apply(tr.optimizer, epoch, i)
                losses += tr.step(images, targets).cpu()
            cpu = meter.stop()
            parts["steps"].append(time.perf_counter() - t)
            t = time.perf_counter()
            metrics = tr.validate()
            parts["validate"].append(time.perf_counter() - t)
            t = time.perf_counter()
            tr.end_epoch(epoch, (losses / max(len(batches), 1)).tolist(), cpu, metrics)  # checkpoints, logs, plot
            parts["save"].append(time.perf_counter() - t)
        out.update({k: sum(v) / len(v) for k, v in parts.items() if v})
        out["train_images"], out["val_images"] = float(tr.n_train), float(len(tr.val_split or []))
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="+", type=Path)
    ap.add_argument("--epochs", type=int, default=2, help="mosaic epochs timed (plus one mosaic-free epoch)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--imgsz", type=int, default=None)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        "| dataset | size | imgsz | train / val images | build s | augment s/epoch (no mosaic) | steps s/epoch "
        "| validation s/epoch | checkpoints s/epoch | augment share | validation share |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for data in args.data:
        imgsz = args.imgsz or choose_imgsz(load_dataset(data, auto_split=True))[0]
        for size in ("fast", "accurate"):
            p = split_epoch(data, size, imgsz, args.epochs, args.batch)
            epoch = p["augment"] + p["steps"] + p["validate"] + p["save"]
            print(
                f"| {data.name} | {size} | {imgsz} | {p['train_images']:.0f} / {p['val_images']:.0f} "
                f"| {p['build']:.1f} | {p['augment']:.1f} ({p['augment_plain']:.1f}) | {p['steps']:.1f} "
                f"| {p['validate']:.1f} | {p['save']:.2f} | {100 * p['augment'] / epoch:.0f}% "
                f"| {100 * p['validate'] / epoch:.0f}% |",
                flush=True,
            )


if __name__ == "__main__":
    main()
