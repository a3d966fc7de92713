"""The adversarial corpus (``tests/adversarial.py``) at benchmark size against a real server on a trained
model: at least 2,000 cases (bombs, broken images and bodies, wrong types in every field, traversal,
keys, URLs, raw HTTP abuse, slow clients) with valid requests interleaved every 20 cases.

Prints the statuses, the 5xx (want 0), the hangs (over the deadline; want 0), the other failures by
group, the server's resident memory before and after (VmRSS, and the peak VmHWM) and a markdown table
for BENCHMARKS.md. Exits 1 on any 5xx or hang.

    python benchmarks/bench_fuzz.py                      # makes a tiny model under runs/bench-fuzz first
    python benchmarks/bench_fuzz.py --models runs/study-full/models --model shapes/fast --n 3000

Without ``--models`` the script makes one with the project's CLI (``speedmap datasets make`` + ``speedmap
train`` for a few epochs + ``speedmap export``), once, under ``--work``. Server flags that the hardening
adds later go in ``--server-args "..."``.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import secrets
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speedmap.serve.process import ServerProcess  # noqa: E402
from tests.adversarial import (  # noqa: E402
    DEADLINE_S,
    RAW_DEADLINE_S,
    WEDGED,
    NoLab,
    Outcome,
    UrlLab,
    corpus,
    counted_5xx,
    failure_report,
    forbidden_strings,
    lab_available,
    noise_jpeg,
    run_corpus,
    summarize,
)

CLI = [sys.executable, "-m", "speedmap"]


def ensure_model(work: Path, size: str = "fast", imgsz: int = 64, epochs: int = 8) -> tuple[Path, str, Path]:
    """A model store with ``shapes/1`` trained for a few epochs, made once under ``work`` with the CLI:
    (store, model id, a folder of test images)."""
    data, run, store = work / f"data-{imgsz}", work / f"run-{size}-{imgsz}", work / f"models-{size}-{imgsz}"
    model = store / "shapes" / "1"
    if not (model / "model.json").is_file():
        print(f"making a {size} model ({imgsz} px, {epochs} epochs) under {work} ...", flush=True)
        subprocess.run(
            [*CLI, "datasets", "make", "shapes", str(data), "--images", "48", "--imgsz", str(imgsz), "--seed", "5"],
            check=True,
        )
        subprocess.run(
            [
                *CLI,
                "train",
                str(data),
                "--size",
                size,
                "--epochs",
                str(epochs),
                "--imgsz",
                str(imgsz),
                "--batch",
                "4",
                "--workers",
                "0",
                "--close-mosaic",
                "2",
                "--out",
                str(run),
            ],
            check=True,
        )
        subprocess.run([*CLI, "export", str(run), "--out", str(model), "--no-eval"], check=True)
    return store, "shapes/1", data / "test"


def tracebacks(log: str) -> Counter[str]:
    found: Counter[str] = Counter()
    for block in log.split("Traceback (most recent call last):")[1:]:
        lines = block.splitlines()
        error = next((ln for ln in lines[1:] if ln and not ln.startswith(" ")), "?")
        found[error[:160]] += 1
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, help="model store (default: make one under --work)")
    ap.add_argument("--model", default="shapes/1", help="model id in --models")
    ap.add_argument("--image", type=Path, help="a valid JPEG for the cases (default: one of the model's data)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-fuzz")
    ap.add_argument("--n", type=int, default=2500, help="cases (at least 2,000 for the record)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=4, help="attack cases in flight")
    ap.add_argument("--max-body-mb", type=float, default=4.0)
    ap.add_argument(
        "--slow-bound",
        type=float,
        default=RAW_DEADLINE_S,
        help="seconds within which the server must close a slow or idle connection",
    )
    ap.add_argument("--huge-line-mb", type=float, default=16.0, help="size of the huge request line")
    ap.add_argument("--server-args", default="", help="more `speedmap serve` flags (quoted)")
    ap.add_argument("--skip", default="", help="regex of case names to leave out (one that wedges the server)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    if args.models:
        store, model_id, images = args.models, args.model, []
    else:
        store, model_id, folder = ensure_model(args.work)
        images = sorted(folder.glob("*.jpg"))
    image_path = args.image or (images[0] if images else None)
    image = image_path.read_bytes() if image_path else noise_jpeg(64, 64)
    key = "fuzz-" + secrets.token_hex(8)
    # short timeouts so that slow clients are cut within --slow-bound; the URL lab lives on 127.0.0.2
    server_args = [
        "--api-key",
        key,
        "--max-body-mb",
        str(args.max_body_mb),
        "--header-timeout",
        "5",
        "--body-timeout",
        "8",
        "--keep-alive-timeout",
        "5",
        "--allow-url-host",
        "example.invalid",
        "--allow-url-host",
        "127.0.0.2",
        *(["--allow-private-urls"] if lab_available() else []),
        *shlex.split(args.server_args),
    ]

    with UrlLab(image) if lab_available() else NoLab() as lab:
        t = time.perf_counter()
        cases = corpus(
            args.seed,
            args.n,
            key=key,
            model_id=model_id,
            image=image,
            lab=lab.lab_url,
            canary=lab.canary_url,
            slow_bound_s=args.slow_bound,
            huge_line_mb=args.huge_line_mb,
        )
        cases = [c for c in cases if not (args.skip and re.search(args.skip, c.name))]
        print(f"{len(cases)} cases built in {time.perf_counter() - t:.1f} s; model {model_id} from {store}", flush=True)
        srv = ServerProcess(store, *server_args)
        srv.start()
        try:
            with httpx.Client(timeout=DEADLINE_S) as client:
                q = {"api_key": key, "confidence": 0.05}
                body = base64.b64encode(image).decode()
                first = client.post(f"{srv.url}/{model_id}", params=q, content=body)
                first.raise_for_status()
                reference = first.json()["predictions"]
                before = srv.memory_mb()

                def checkpoint(k: int) -> list[str]:
                    try:
                        r = client.post(f"{srv.url}/{model_id}", params=q, content=body)
                        h = client.get(f"{srv.url}/healthz")
                        ok = r.status_code == 200 and _same(r.json()["predictions"], reference)
                        if ok and h.status_code == 200:
                            return []
                        return [f"after {k}: valid {r.status_code} {r.text[:150]}; healthz {h.status_code}"]
                    except httpx.TimeoutException:
                        return [f"after {k}: {WEDGED}: a valid request got no answer in {DEADLINE_S:g} s"]
                    except (httpx.HTTPError, ValueError, KeyError) as exc:
                        return [f"after {k}: valid request failed: {exc!r}"[:300]]

                done = [0]

                def progress(o: Outcome) -> None:
                    done[0] += 1
                    if done[0] % 250 == 0:
                        print(f"  {done[0]}/{len(cases)} ({time.perf_counter() - t0:.0f} s)", flush=True)

                forbidden = forbidden_strings(key, str(store))
                t0 = time.perf_counter()
                outcomes, valid_failures = run_corpus(
                    cases, srv.url, forbidden, workers=args.workers, checkpoint=checkpoint, progress=progress
                )
                elapsed = time.perf_counter() - t0
                alive = srv.alive()
                after = srv.memory_mb() if alive else {"VmRSS": float("nan"), "VmHWM": float("nan")}
                counted = counted_5xx(srv.url) if alive else {}
        finally:
            srv.stop()
        log = srv.output()
        canary = list(lab.canary_hits)

    s = summarize(outcomes)
    tbs = tracebacks(log)
    print(f"\n{s['cases']} cases in {elapsed:.0f} s; statuses: {s['statuses']}")
    print(
        f"5xx: {s['5xx']} (want 0); hangs: {s['hangs']} (want 0); failures: {s['failures']}; "
        f"valid-request failures: {len(valid_failures)}; server alive: {alive}"
    )
    print(
        f"5xx counted by the server (/metrics): {counted or 0}; tracebacks in its log: {sum(tbs.values())}; "
        f"loopback canary hits: {len(canary)}"
    )
    print(
        f"server RSS: {before['VmRSS']:.0f} MB before, {after['VmRSS']:.0f} MB after; peak (VmHWM) "
        f"{after['VmHWM']:.0f} MB"
    )
    if s["failed_groups"]:
        print("failures by group: " + ", ".join(f"{g} {n}" for g, n in sorted(s["failed_groups"].items())))
        print(failure_report(outcomes, 60))
    for err, n in tbs.most_common(15):
        print(f"  log: {n} x {err}")
    for line in valid_failures[:10]:
        print(f"  valid: {line}")
    hist = ", ".join(f"{k}: {v}" for k, v in s["statuses"].items())
    print(
        "\n| cases | statuses | 5xx | hangs | other failures | valid requests broken | server RSS before -> after "
        "(peak) |\n|---|---|---|---|---|---|---|"
    )
    ran = f"{s['cases']}" + (f" of {len(cases)} (stopped: server unresponsive)" if s["cases"] < len(cases) else "")
    print(
        f"| {ran} | {hist} | {s['5xx']} | {s['hangs']} | {s['failures'] - s['5xx'] - s['hangs']} | "
        f"{len(valid_failures)} | {before['VmRSS']:.0f} -> {after['VmRSS']:.0f} MB "
        f"({after['VmHWM']:.0f} MB) |"
    )
    if args.json:
        doc = {
            **s,
            "seconds": elapsed,
            "rss_mb": {"before": before, "after": after},
            "metrics_5xx": counted,
            "tracebacks": dict(tbs),
            "canary_hits": canary,
            "valid_failures": valid_failures,
        }
        args.json.write_text(json.dumps(doc, indent=1))
    sys.exit(1 if s["5xx"] or s["hangs"] or counted or not alive else 0)


def _same(got: list[dict], want: list[dict]) -> bool:
    def key(p: dict) -> tuple:
        return (
            p["class"],
            round(p["x"], 1),
            round(p["y"], 1),
            round(p["width"], 1),
            round(p["height"], 1),
            round(p["confidence"], 3),
        )

    return sorted(map(key, got)) == sorted(map(key, want))


if __name__ == "__main__":
    main()
