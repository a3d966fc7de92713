"""Pack `speedmap pretrain` runs into the weights the package ships (src/speedmap/weights/SIZE.pt, fp16).

    python scripts/pack_weights.py runs/pretrain/fast/fast runs/pretrain/accurate/accurate

Each run's best.pt goes to src/speedmap/weights/SIZE.pt with its pretrain.json (command, seed, scenes, code
version) inside, which `train.json` of every run that starts from it then records.
"""

from __future__ import annotations

import sys
from pathlib import Path

from speedmap.train.checkpoint import BEST, load_checkpoint
from speedmap.train.weights import pack_weights

WEIGHTS = Path(__file__).resolve().parent.parent / "src" / "speedmap" / "weights"

for run in map(Path, sys.argv[1:]):
    size = load_checkpoint(run / BEST)["size"]
    out = pack_weights(run, WEIGHTS / f"{size}.pt")
    print(f"{size}: {out} ({out.stat().st_size / 1e6:.1f} MB)")
