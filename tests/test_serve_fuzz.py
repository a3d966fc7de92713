"""The server under attack, started for real: the adversarial corpus of ``tests/adversarial.py`` (a few
hundred cases: bombs, broken images and bodies, wrong types in every field, traversal, keys, URLs, raw
HTTP abuse, slow clients) with valid requests interleaved, and a schema-driven fuzz of ``/openapi.json``
(schemathesis when installed, else hypothesis on the paths the schema lists).

What must hold: no 5xx (neither answered nor counted in ``/metrics``); no request over its deadline; no
response carrying a server path, a traceback or the API key; valid requests sent every 20 attack cases
give the same predictions as before the attack; ``/healthz`` answers throughout; the server is alive at
the end and its log has no traceback; no image URL reaches a loopback listener.

``SPEEDMAP_FUZZ_CASES`` (default 400) and ``SPEEDMAP_FUZZ_SEED`` resize and reseed the corpus, and
``SPEEDMAP_FUZZ_SKIP`` (a regex of case names) leaves cases out: a case that wedges the server stops the
run (every later case would wait out its deadline), so skipping it shows the rest;
``SPEEDMAP_FUZZ_OPENAPI_EXAMPLES`` (default 150) sizes the schema fuzz. ``benchmarks/bench_fuzz.py`` runs
thousands of cases.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson
import pytest

from tests.adversarial import (
    DEADLINE_S,
    LEGACY_PARAMS,
    MODEL_ID,
    ODD_TEXT,
    RAW_DEADLINE_S,
    WEDGED,
    HttpCase,
    NoLab,
    Outcome,
    UrlLab,
    attack_client,
    b64,
    corpus,
    counted_5xx,
    failure_report,
    forbidden_strings,
    json_text,
    lab_available,
    run_corpus,
    run_http,
    summarize,
)
from tests.test_serve import KEY, boxes, start_server

FUZZ_CASES = int(os.environ.get("SPEEDMAP_FUZZ_CASES", "400"))
FUZZ_SEED = int(os.environ.get("SPEEDMAP_FUZZ_SEED", "0"))
OPENAPI_EXAMPLES = int(os.environ.get("SPEEDMAP_FUZZ_OPENAPI_EXAMPLES", "150"))
SKIP = os.environ.get("SPEEDMAP_FUZZ_SKIP", "")  # a regex of case names to leave out (say, one that wedges the server)
CHECK_EVERY = 20  # attack cases between two rounds of valid requests
WORKERS = 4  # attack cases in flight at once (a heavy case runs alone)
CONFIDENCE = 0.05

# The server as the fuzz meets it: bounded body, short timeouts for slow clients (each raw case must be
# answered or closed within RAW_DEADLINE_S = 15 s: head in 5 s, body in 8 s, idle in 5 s), image URLs on for two hosts
# (example.invalid never resolves; 127.0.0.2 is the URL lab with its redirects, bombs and drips, reachable
# only with --allow-private-urls; 127.0.0.1 hosts a canary that no URL may reach).
SERVER_ARGS = [
    "--api-key",
    KEY,
    "--max-body-mb",
    "4",
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
]
LAB_ARGS = ["--allow-private-urls"]  # the corpus's server only: the schema fuzz meets the default


class LogDrain:
    """Reads the server's output as it comes (a pipe nobody reads would block a server that logs much)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)


def stop(proc: subprocess.Popen, drain: LogDrain) -> str:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    drain.thread.join(10)
    return drain.text()


def tracebacks(log: str) -> Counter[str]:
    """``{'File ... in f: Error: message': count}`` of each traceback in a log (innermost frame)."""
    found: Counter[str] = Counter()
    for block in log.split("Traceback (most recent call last):")[1:]:
        lines = block.splitlines()
        frames = [ln.strip() for ln in lines if ln.startswith("  File ")]
        error = next((ln for ln in lines[1:] if ln and not ln.startswith(" ")), "?")
        where = re.sub(r'^File "(?:.*/)?([^/"]+)", line (\d+), in (\S+)', r"\1:\2 \3", frames[-1]) if frames else ""
        found[f"{where}: {error[:200]}"] += 1
    return found


def web_built() -> bool:
    from speedmap.web import WebBuildMissing, vendor_manifest

    try:
        vendor_manifest()
        return True
    except WebBuildMissing:
        return False


@pytest.fixture(scope="module")
def fuzz_images(tiny_run: Path) -> list[Path]:
    data = Path(json.loads((tiny_run / "train.json").read_text())["dataset"]["abspath"])
    return sorted((data / "test").glob("*.jpg"))[:4]


def v1_doc(image: bytes, **fields: Any) -> dict[str, Any]:
    return {
        "model_id": MODEL_ID,
        "api_key": KEY,
        "confidence": CONFIDENCE,
        "image": {"type": "base64", "value": b64(image)},
        **fields,
    }


def test_adversarial_corpus(model_store: Path, tiny_run: Path, fuzz_images: list[Path]) -> None:
    image = fuzz_images[0].read_bytes()
    with UrlLab(image) if lab_available() else NoLab() as lab:
        cases = corpus(
            FUZZ_SEED,
            FUZZ_CASES,
            key=KEY,
            image=image,
            lab=lab.lab_url,
            canary=lab.canary_url,
            web=web_built(),
            slow_bound_s=RAW_DEADLINE_S,
        )
        cases = [c for c in cases if not (SKIP and re.search(SKIP, c.name))]
        proc, url = start_server(model_store, *SERVER_ARGS, *(LAB_ARGS if lab.lab_url else []))
        drain = LogDrain(proc)
        problems: list[str] = []
        try:
            with httpx.Client(timeout=DEADLINE_S) as client:
                legacy_q = {"api_key": KEY, "confidence": CONFIDENCE}
                raw64 = b64(image)
                first = client.post(f"{url}/{MODEL_ID}", params=legacy_q, content=raw64)
                assert first.status_code == 200, first.text
                reference = boxes(first.json()["predictions"])
                assert reference, "the reference image gives no detection: nothing to compare"
                v1_ref = client.post(f"{url}/infer/object_detection", json=v1_doc(image))
                assert v1_ref.status_code == 200 and boxes(v1_ref.json()["predictions"]) == reference

                def checkpoint(k: int) -> list[str]:
                    """Valid requests while attack cases are in flight: health, then both inference routes."""
                    out = []
                    try:
                        t = time.perf_counter()
                        h = client.get(f"{url}/healthz")
                        if h.status_code != 200:
                            out.append(f"after {k} cases: /healthz answered {h.status_code}")
                        r = client.post(f"{url}/{MODEL_ID}", params=legacy_q, content=raw64)
                        if r.status_code != 200 or boxes(r.json()["predictions"]) != reference:
                            out.append(f"after {k} cases: legacy valid request {r.status_code} {r.text[:200]}")
                        v = client.post(f"{url}/infer/object_detection", json=v1_doc(image))
                        if v.status_code != 200 or boxes(v.json()["predictions"]) != reference:
                            out.append(f"after {k} cases: v1 valid request {v.status_code} {v.text[:200]}")
                        if time.perf_counter() - t > DEADLINE_S:
                            out.append(f"after {k} cases: valid requests took {time.perf_counter() - t:.1f} s")
                    except httpx.TimeoutException:
                        out.append(f"after {k} cases: {WEDGED}: a valid request got no answer in {DEADLINE_S:g} s")
                    except (httpx.HTTPError, ValueError, KeyError) as exc:
                        out.append(f"after {k} cases: valid request failed: {exc!r}"[:300])
                    return out

                forbidden = forbidden_strings(KEY, str(model_store), str(tiny_run), str(fuzz_images[0].parent))
                done, t0 = [0], time.perf_counter()

                def progress(_: Outcome) -> None:  # shown with `pytest -s`
                    done[0] += 1
                    if done[0] % 100 == 0:
                        print(f"  {done[0]}/{len(cases)} cases, {time.perf_counter() - t0:.0f} s", flush=True)

                outcomes, valid_failures = run_corpus(
                    cases, url, forbidden, workers=WORKERS, checkpoint=checkpoint, every=CHECK_EVERY, progress=progress
                )
                alive = proc.poll() is None
                server_5xx = counted_5xx(url) if alive else {}
        finally:
            log = stop(proc, drain)
        canary_hits = list(lab.canary_hits)

    summary = summarize(outcomes)
    print(f"\nadversarial corpus: {json.dumps(summary)}")
    failed = [o for o in outcomes if o.failed]
    if failed:
        problems.append(f"{len(failed)} of {len(outcomes)} cases failed; by cause:\n{_by_cause(failed)}")
        problems.append(f"the failed cases:\n{failure_report(outcomes)}")
    problems[:0] = valid_failures  # first: what broke for valid clients
    if not alive:
        problems.append(f"the server died (exit code {proc.returncode})")
    if server_5xx:
        problems.append(f"the server counted 5xx answers (also those no client saw): {server_5xx}")
    if "Traceback" in log:
        tb = "\n".join(f"  {n} x {t}" for t, n in tracebacks(log).most_common())
        problems.append(f"the server log has tracebacks:\n{tb}")
    if canary_hits:
        problems.append(f"image URLs reached a loopback listener: {canary_hits}")
    print("\n\n".join(problems))
    assert not problems, "\n\n".join(problems)[:30_000]


def _by_cause(failed: list[Outcome]) -> str:
    """Failures grouped by what went wrong and the start of the answer (``HTTP 500 OverflowError...``)."""
    causes: dict[str, list[str]] = {}
    for o in failed:
        key = re.sub(r"\d+(\.\d+)? s", "N s", o.failure.split(";")[0])
        msg = re.sub(r"[0-9a-f-]{36}|\d+", "N", o.excerpt.split("\r\n")[0][:90])
        causes.setdefault(f"{key} | {msg}", []).append(o.case.name)
    return "\n".join(
        f"  [{len(v)}] {k}\n      e.g. {', '.join(v[:4])}"
        for k, v in sorted(causes.items(), key=lambda kv: -len(kv[1]))
    )


# ---------------------------------------------------------------------------------------------- schema fuzz


@pytest.fixture(scope="module")
def fuzz_server(model_store: Path) -> Iterator[tuple[str, subprocess.Popen, LogDrain]]:
    proc, url = start_server(model_store, *SERVER_ARGS)
    drain = LogDrain(proc)
    yield url, proc, drain
    stop(proc, drain)


def _extras(st: Any, image: bytes) -> Any:
    """What the schema does not say (the routes read raw bodies): a key or not, known query parameters with
    odd values, a body of any kind."""
    valid_v1 = orjson.dumps(v1_doc(image))
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["model_id", "image", "api_key", "confidence", "type", "value"]), inner, max_size=4
            )
        ),
        max_leaves=12,
    )
    body = st.one_of(
        st.none(),
        st.just(b64(image).encode()),
        st.just(valid_v1),
        st.binary(max_size=300),
        json_values.map(orjson.dumps),
    )
    auth = st.sampled_from([{}, {"Authorization": f"Bearer {KEY}"}, {"Authorization": "Bearer wrong"}])
    query = st.dictionaries(
        st.sampled_from([*LEGACY_PARAMS, "foo"]), st.sampled_from(ODD_TEXT) | st.text(max_size=20), max_size=3
    )
    ctype = st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "image/jpeg",
        ]
    )
    return st.tuples(auth, query, body, ctype)


def _operations_from_schema(spec: dict[str, Any], st: Any) -> tuple[str, Any]:
    """(how, strategy of (method, path, query, headers)) for every operation of the schema: schemathesis
    when installed, else hypothesis text for each path parameter."""
    try:
        import schemathesis
    except ImportError:
        schemathesis = None
    if schemathesis is not None:
        schema = schemathesis.openapi.from_dict(spec)
        ops = [r.ok() for r in schema.get_all_operations()]
        modes = list(schemathesis.GenerationMode)
        cases = st.one_of([op.as_strategy(generation_mode=m) for op in ops for m in modes])

        def plain(case: Any) -> tuple[str, str, dict[str, Any], dict[str, str]]:
            return (
                case.method.upper(),
                case.formatted_path,
                dict(case.query or {}),
                {k: str(v) for k, v in (case.headers or {}).items()},
            )

        return f"schemathesis {schemathesis.__version__}", cases.map(plain)
    ops = [(method.upper(), path) for path, item in spec["paths"].items() for method in item]

    def fill(op: tuple[str, str]) -> Any:
        method, path = op
        names = re.findall(r"\{(\w+)(?::path)?\}", path)
        values = st.fixed_dictionaries({n: st.text(min_size=1, max_size=30) for n in names})
        return values.map(
            lambda v: (method, re.sub(r"\{(\w+)(?::path)?\}", lambda m: quote(v[m.group(1)], safe=""), path), {}, {})
        )

    return "hypothesis (schemathesis not installed)", st.sampled_from(ops).flatmap(fill)


def test_openapi_schema_fuzz(
    fuzz_server: tuple[str, subprocess.Popen, LogDrain], model_store: Path, fuzz_images: list[Path]
) -> None:
    """Every operation of /openapi.json with generated path parameters (schemathesis: conforming and
    non-conforming), plus a key or not, odd query parameters and bodies of any kind: never a 5xx, a leak,
    or a request over the deadline; the server's log stays free of tracebacks."""
    pytest.importorskip("hypothesis")  # (schemathesis brings it; neither is a dependency yet)
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    url, proc, drain = fuzz_server
    spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
    how, operations = _operations_from_schema(spec, st)
    image = fuzz_images[0].read_bytes()
    forbidden = forbidden_strings(KEY, str(model_store))
    outcomes: list[Outcome] = []

    with attack_client() as client:

        @settings(
            max_examples=OPENAPI_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(op=operations, extra=_extras(st, image))
        def fuzz(op: tuple[str, str, dict[str, Any], dict[str, str]], extra: tuple) -> None:
            method, path, query, headers = op
            auth, more_query, body, ctype = extra
            params = {**query, **more_query}
            tgt = quote(path, safe="/%:@!$&'()*+,;=-._~") + (
                "?" + urlencode(params, quote_via=quote, safe="") if params else ""
            )
            hdrs = {k: v for k, v in {**headers, **auth}.items() if _header_ok(k, v)}
            if body is not None and method in ("POST", "PUT", "PATCH"):
                hdrs["Content-Type"] = ctype
            else:
                body = None
            case = HttpCase(f"openapi/{method} {path[:60]}", method, tgt, hdrs, body)
            outcomes.append(run_http(client, url, case, forbidden))

        fuzz()
    failed = [o for o in outcomes if o.failed]
    statuses = Counter(str(o.status) for o in outcomes)
    print(f"\nopenapi fuzz with {how}: {len(outcomes)} requests, statuses {dict(sorted(statuses.items()))}")
    problems = [f"{len(failed)} of {len(outcomes)} requests failed:\n{failure_report(outcomes)}"] if failed else []
    if proc.poll() is not None:
        problems.append(f"the server died (exit code {proc.returncode})")
    log = drain.text()
    if "Traceback" in log:
        problems.append(
            "the server log has tracebacks:\n" + "\n".join(f"  {n} x {t}" for t, n in tracebacks(log).most_common())
        )
    assert not problems, "\n\n".join(problems)[:20_000]


def _header_ok(name: str, value: str) -> bool:
    """What an HTTP client can send (h11 refuses control characters and edge whitespace)."""
    return bool(re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name)) and bool(
        re.fullmatch(r"([\x21-\x7e\x80-\xff]([\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?", value)
    )


# ---------------------------------------------------------------------------------------------- semantics


def test_json_strings_false_are_not_read_as_true(
    fuzz_server: tuple[str, subprocess.Popen, LogDrain], fuzz_images: list[Path]
) -> None:
    """``class_agnostic_nms: "false"`` (and "0", "no") must mean false or be refused, never read as true."""
    url = fuzz_server[0]

    def predict(image: bytes, literal: str) -> tuple[int, list[tuple]]:
        doc = json_text(v1_doc(image, confidence=0.01, iou_threshold=0.3), {"class_agnostic_nms": literal})
        r = httpx.post(
            f"{url}/infer/object_detection",
            content=doc,
            headers={"Content-Type": "application/json"},
            timeout=DEADLINE_S,
        )
        return r.status_code, boxes(r.json()["predictions"]) if r.status_code == 200 else []

    differs = 0
    for path in fuzz_images:
        image = path.read_bytes()
        (s_on, on), (s_off, off) = predict(image, "true"), predict(image, "false")
        assert s_on == s_off == 200
        differs += on != off
        for literal in ('"false"', '"False"', '"0"', '"no"', "0"):
            status, got = predict(image, literal)
            assert 400 <= status < 500 or got == off, (path.name, literal, status)
        status, got = predict(image, '"true"')
        assert 400 <= status < 500 or got == on, (path.name, '"true"', status)
    if not differs:  # (confidence 0.01 is the server's floor; the tiny model is unsure enough to differ)
        pytest.skip("class-agnostic NMS changes nothing on these images: the check would prove nothing")
