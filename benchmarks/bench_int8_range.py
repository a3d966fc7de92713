"""int8 with 8-bit and with 7-bit weights (ONNX Runtime's ``reduce_range``) against fp32, on a study's runs:
the u8 x s8 products of AVX2 integer kernels without VNNI saturate, which cost 9-12 points of mAP50-95 on an
AVX2-only CPU (BENCHMARKS.md, issue 33, fourth session).

    python benchmarks/bench_int8_range.py /work/runs/real-study-8/bccd /work/data/real/bccd --out /tmp/int8-range

Exports each run of the study (``runs/*``) three ways and scores each with ``speedmap eval`` on the test split.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
from pathlib import Path

import onnxruntime.quantization as q

from speedmap.export import export_model


def _forced(quantize: object, bits7: bool, *args: object, **kwargs: object) -> object:
    """``quantize`` with reduce_range set as asked, whatever the exporter passes."""
    return quantize(*args, **{**kwargs, "reduce_range": bits7})  # type: ignore[operator]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("study", type=Path, help="a study folder (its runs/ are exported)")
    ap.add_argument("data", help="the dataset the study ran on")
    ap.add_argument("--out", type=Path, required=True, help="a model store to write")
    args = ap.parse_args()
    quantize = q.quantize_static
    print("| run | variant | mAP50-95 | mAP50 |\n|---|---|---|---|")
    for run in sorted((args.study / "runs").iterdir()):
        for name, int8, bits7 in (("fp32", None, False), ("int8-w8", args.data, False), ("int8-w7", args.data, True)):
            # the exporter calls onnxruntime.quantization.quantize_static: here with reduce_range as asked
            q.quantize_static = functools.partial(_forced, quantize, bits7)
            export_model(run, args.out / f"{run.name}-{name}" / "1", int8=int8, evaluate=False, log=lambda m: None)
            cmd = [sys.executable, "-m", "speedmap", "eval", "--model", f"{run.name}-{name}/1"]
            cmd += ["--models", str(args.out), "--data", args.data, "--split", "test", "--json"]
            m = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            print(f"| {run.name} | {name} | {m['map']:.3f} | {m['map50']:.3f} |", flush=True)
    q.quantize_static = quantize


if __name__ == "__main__":
    main()
