"""``speedmap serve``: the Roboflow-compatible inference server (FastAPI + uvicorn)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from speedmap.cli.common import clean_errors, err
from speedmap.errors import MissingExtra

# The command's arguments and options, declared here so that its signature is a list of names and defaults.
ModelsOpt = Annotated[Path | None, typer.Option("--models", help="Model store (default $SPEEDMAP_MODELS or ./models).")]
HostOpt = Annotated[str, typer.Option("--host")]
PortOpt = Annotated[int, typer.Option("--port")]
WorkersOpt = Annotated[
    int, typer.Option("--workers", min=1, help="Server processes (ONNX Runtime threads split among them).")
]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="SPEEDMAP_API_KEY", help="Require this API key.")]
MaxBatchOpt = Annotated[int, typer.Option("--max-batch", min=1, help="Most images per forward pass.")]
MaxWaitOpt = Annotated[float, typer.Option("--max-wait-ms", min=0.0, help="Wait this long to fill a batch.")]
QueueSizeOpt = Annotated[int, typer.Option("--queue-size", min=1, help="Waiting requests per model before 503.")]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--request-timeout",
        "--timeout",
        min=1.0,
        max=600.0,
        help="Deadline of a whole request in seconds (504 after).",
    ),
]
MaxBodyOpt = Annotated[float, typer.Option("--max-body-mb", min=0.001, help="Largest request body (413 above).")]
MaxInflightOpt = Annotated[
    float,
    typer.Option(
        "--max-inflight-mb",
        min=1.0,
        help="Bytes all requests may hold at once: bodies and decoded images (503 with Retry-After above).",
    ),
]
MaxImagesOpt = Annotated[
    int, typer.Option("--max-images", min=1, max=1024, help="Images in one v1 request (413 above).")
]
HeaderTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--header-timeout", min=0.1, max=600.0, help="Request line and headers must arrive within this (408)."
    ),
]
BodyTimeoutOpt = Annotated[
    float,
    typer.Option("--body-timeout", min=0.1, max=600.0, help="The request body must arrive within this (408)."),
]
KeepAliveOpt = Annotated[
    float,
    typer.Option("--keep-alive-timeout", min=0.1, max=600.0, help="Close a keep-alive connection idle this long."),
]
ApiKeyFileOpt = Annotated[Path | None, typer.Option("--api-key-file", help="Read the API key from this file.")]
AllowPrivateOpt = Annotated[
    bool, typer.Option("--allow-private-urls", help="Let image URLs reach loopback and private addresses.")
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="ONNX Runtime threads per worker.")]
ProvidersOpt = Annotated[str | None, typer.Option("--providers", help="ONNX Runtime providers, e.g. cpu or cuda.")]
EagerOpt = Annotated[bool, typer.Option("--eager/--lazy", help="Load every model at startup (default: on first use).")]
AllowUrlOpt = Annotated[
    list[str] | None, typer.Option("--allow-url-host", help="Allow image URLs from this host (repeat).")
]
LogLevelOpt = Annotated[str, typer.Option("--log-level")]
RayOpt = Annotated[bool, typer.Option("--ray", help="Run on Ray Serve (local, or the cluster at RAY_ADDRESS).")]
ReplicasOpt = Annotated[int, typer.Option("--replicas", min=1, help="Ray Serve replicas (with --ray).")]
LoopOpt = Annotated[str, typer.Option("--loop", help="uvicorn event loop: auto (uvloop if installed) | asyncio.")]
HttpOpt = Annotated[str, typer.Option("--http", help="uvicorn HTTP parser: auto (httptools if installed) | h11.")]


@clean_errors
def serve_command(
    models_dir: ModelsOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 9001,
    workers: WorkersOpt = 1,
    api_key: ApiKeyOpt = None,
    max_batch: MaxBatchOpt = 8,
    max_wait_ms: MaxWaitOpt = 0.0,
    queue_size: QueueSizeOpt = 256,
    timeout_s: TimeoutOpt = 30.0,
    max_body_mb: MaxBodyOpt = 32.0,
    max_inflight_mb: MaxInflightOpt = 1024.0,
    max_images: MaxImagesOpt = 16,
    header_timeout_s: HeaderTimeoutOpt = 10.0,
    body_timeout_s: BodyTimeoutOpt = 20.0,
    keep_alive_s: KeepAliveOpt = 5.0,
    api_key_file: ApiKeyFileOpt = None,
    allow_private_urls: AllowPrivateOpt = False,
    threads: ThreadsOpt = None,
    providers: ProvidersOpt = None,
    eager: EagerOpt = False,
    allow_urls: AllowUrlOpt = None,
    log_level: LogLevelOpt = "warning",
    use_ray: RayOpt = False,
    replicas: ReplicasOpt = 1,
    loop: LoopOpt = "auto",
    http: HttpOpt = "auto",
) -> None:
    """Serve the models of a store over Roboflow's hosted API (POST /{project}/{version}) and the
    inference server's v1 API (/infer/object_detection, /model/*), with micro-batching."""
    from speedmap.modelstore import default_models_dir, list_models
    from speedmap.serve.app import ServeConfig
    from speedmap.serve.protocol import configure

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
        url_allowlist=list(allow_urls or []),
        url_allow_private=allow_private_urls,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_inflight_bytes=int(max_inflight_mb * 1024 * 1024),
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        max_images=max_images,
    )
    configure(cfg.header_timeout_s, cfg.max_head_bytes)
    _announce(cfg, store, ids, host, port)
    if use_ray:
        _run_on_ray(cfg, replicas, host, port)
        return
    _run_uvicorn(cfg, _uvicorn_options(cfg, host, port, log_level, loop, http, keep_alive_s))


def _announce(cfg: Any, store: Path, ids: list[str], host: str, port: int) -> None:
    """The models the server will serve, and where it listens."""
    err.print(
        f"speedmap serving {len(ids)} model(s) from {escape(str(store))} "
        f"({'loaded at startup' if cfg.eager else 'loaded on first use'}): {escape(', '.join(ids)) or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    err.print(
        f"listening on http://{host}:{port}  (POST /{{project}}/{{version}}, /infer/object_detection, "
        f"/model/registry, /metrics, /docs){'; API key required' if cfg.api_key else ''}",
        highlight=False,
    )


def _uvicorn_options(
    cfg: Any, host: str, port: int, log_level: str, loop: str, http: str, keep_alive_s: float
) -> dict[str, Any]:
    from speedmap.serve.protocol import GuardedHttpToolsProtocol

    # httptools with a deadline and a size limit on request heads (uvicorn has neither); h11 has the size limit
    protocol = GuardedHttpToolsProtocol if http in ("auto", "httptools") else http
    return {
        "host": host,
        "port": port,
        "log_level": log_level,
        "loop": loop,
        "http": protocol,
        "timeout_keep_alive": keep_alive_s,
        "access_log": False,
        # requests in flight get 8 s, then the process exits: SIGTERM stops it within 10 s (at 10 here, the exit
        # itself took it to 10.3-10.7 s on a busy core)
        "timeout_graceful_shutdown": 8,
        "h11_max_incomplete_event_size": cfg.max_head_bytes,
    }


def _run_on_ray(cfg: Any, replicas: int, host: str, port: int) -> None:
    try:
        from speedmap.serve.ray_app import run
    except ImportError as exc:
        raise MissingExtra("--ray (Ray Serve)", "ray", exc) from None
    run(cfg, replicas, host, port)


def _run_uvicorn(cfg: Any, kw: dict[str, Any]) -> None:
    """One process serves the app; several workers each build it from the config in the environment."""
    import uvicorn

    from speedmap.serve.app import create_app

    if cfg.workers > 1:
        os.environ["SPEEDMAP_SERVE_CONFIG"] = cfg.to_env()
        uvicorn.run("speedmap.serve.app:app_from_env", factory=True, workers=cfg.workers, **kw)
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
