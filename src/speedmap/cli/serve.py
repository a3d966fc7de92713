"""``speedmap serve``: the Roboflow-compatible inference server (FastAPI + uvicorn)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.markup import escape

from speedmap.cli.common import clean_errors, err
from speedmap.errors import MissingExtra


@clean_errors
def serve_command(
    models_dir: Path | None = typer.Option(
        None, "--models", help="Model store (default $SPEEDMAP_MODELS or ./models)."
    ),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(9001, "--port"),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Server processes (ONNX Runtime threads split among them)."
    ),
    api_key: str | None = typer.Option(None, "--api-key", envvar="SPEEDMAP_API_KEY", help="Require this API key."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Most images per forward pass."),
    max_wait_ms: float = typer.Option(0.0, "--max-wait-ms", min=0.0, help="Wait this long to fill a batch."),
    queue_size: int = typer.Option(256, "--queue-size", min=1, help="Waiting requests per model before 503."),
    timeout_s: float = typer.Option(
        30.0,
        "--request-timeout",
        "--timeout",
        min=1.0,
        max=600.0,
        help="Deadline of a whole request in seconds (504 after).",
    ),
    max_body_mb: float = typer.Option(32.0, "--max-body-mb", min=0.001, help="Largest request body (413 above)."),
    max_inflight_mb: float = typer.Option(
        1024.0,
        "--max-inflight-mb",
        min=1.0,
        help="Bytes all requests may hold at once: bodies and decoded images (503 with Retry-After above).",
    ),
    max_images: int = typer.Option(16, "--max-images", min=1, max=1024, help="Images in one v1 request (413 above)."),
    header_timeout_s: float = typer.Option(
        10.0, "--header-timeout", min=0.1, max=600.0, help="Request line and headers must arrive within this (408)."
    ),
    body_timeout_s: float = typer.Option(
        20.0, "--body-timeout", min=0.1, max=600.0, help="The request body must arrive within this (408)."
    ),
    keep_alive_s: float = typer.Option(
        5.0, "--keep-alive-timeout", min=0.1, max=600.0, help="Close a keep-alive connection idle this long."
    ),
    api_key_file: Path | None = typer.Option(None, "--api-key-file", help="Read the API key from this file."),
    allow_private_urls: bool = typer.Option(
        False, "--allow-private-urls", help="Let image URLs reach loopback and private addresses."
    ),
    threads: int | None = typer.Option(None, "--threads", help="ONNX Runtime threads per worker."),
    providers: str | None = typer.Option(None, "--providers", help="ONNX Runtime providers, e.g. cpu or cuda."),
    eager: bool = typer.Option(False, "--eager/--lazy", help="Load every model at startup (default: on first use)."),
    allow_urls: list[str] = typer.Option([], "--allow-url-host", help="Allow image URLs from this host (repeat)."),
    log_level: str = typer.Option("warning", "--log-level"),
    use_ray: bool = typer.Option(False, "--ray", help="Run on Ray Serve (local, or the cluster at RAY_ADDRESS)."),
    replicas: int = typer.Option(1, "--replicas", min=1, help="Ray Serve replicas (with --ray)."),
    loop: str = typer.Option("auto", "--loop", help="uvicorn event loop: auto (uvloop if installed) | asyncio."),
    http: str = typer.Option("auto", "--http", help="uvicorn HTTP parser: auto (httptools if installed) | h11."),
) -> None:
    """Serve the models of a store over Roboflow's hosted API (POST /{project}/{version}) and the
    inference server's v1 API (/infer/object_detection, /model/*), with micro-batching."""
    import uvicorn

    from speedmap.modelstore import default_models_dir, list_models
    from speedmap.serve.app import ServeConfig, create_app
    from speedmap.serve.protocol import GuardedHttpToolsProtocol, configure

    _hide_key_from_ps()
    if api_key_file is not None:
        api_key = _read_key(api_key_file)
    store = models_dir or default_models_dir()
    ids = [m.id for m in list_models(store)]
    cfg = ServeConfig(
        models_dir=str(store),
        api_key=api_key,
        workers=workers,
        threads=threads,
        providers=providers,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        queue_size=queue_size,
        timeout_s=timeout_s,
        eager=eager,
        allow_urls=bool(allow_urls),
        url_allowlist=list(allow_urls),
        url_allow_private=allow_private_urls,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_inflight_bytes=int(max_inflight_mb * 1024 * 1024),
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        max_images=max_images,
    )
    configure(cfg.header_timeout_s, cfg.max_head_bytes)
    err.print(
        f"speedmap serving {len(ids)} model(s) from {escape(str(store))} "
        f"({'loaded at startup' if eager else 'loaded on first use'}): {escape(', '.join(ids)) or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    err.print(
        f"listening on http://{host}:{port}  (POST /{{project}}/{{version}}, /infer/object_detection, "
        f"/model/registry, /metrics, /docs){'; API key required' if api_key else ''}",
        highlight=False,
    )
    # httptools with a deadline and a size limit on request heads (uvicorn has neither); h11 has the size limit
    protocol = GuardedHttpToolsProtocol if http in ("auto", "httptools") else http
    kw = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "loop": loop,
        "http": protocol,
        "timeout_keep_alive": keep_alive_s,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "h11_max_incomplete_event_size": cfg.max_head_bytes,
    }
    if use_ray:
        try:
            from speedmap.serve.ray_app import run
        except ImportError as exc:
            raise MissingExtra("--ray (Ray Serve)", "ray", exc) from None
        run(cfg, replicas, host, port)
        return
    if workers > 1:
        os.environ["SPEEDMAP_SERVE_CONFIG"] = cfg.to_env()
        uvicorn.run("speedmap.serve.app:app_from_env", factory=True, workers=workers, **kw)
    else:
        uvicorn.run(create_app(cfg), **kw)


def _hide_key_from_ps() -> None:
    """``--api-key K`` is readable by every user in ``ps``: start again with the key in the environment
    (``SPEEDMAP_API_KEY``, read by the same option) and without it on the command line."""
    argv = sys.argv[1:]
    if not any(a == "--api-key" or a.startswith("--api-key=") for a in argv):
        return
    rest: list[str] = []
    key, args = None, iter(argv)
    for arg in args:
        if arg == "--api-key":
            key = next(args, None)
        elif arg.startswith("--api-key="):
            key = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if key is None:
        return
    err.print(
        "note: --api-key is visible to every user in `ps`; the server restarts itself with the key in "
        "SPEEDMAP_API_KEY instead (set that, or use --api-key-file, to skip this)",
        highlight=False,
    )
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "speedmap", *rest], {**os.environ, "SPEEDMAP_API_KEY": key})


def _read_key(path: Path) -> str:
    try:
        key = path.read_text().strip()
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot read the API key file: {exc.strerror}")
        raise typer.Exit(2) from None
    if not key:
        err.print("[bold red]error:[/] the API key file is empty")
        raise typer.Exit(2)
    return key
