"""``speedmap serve``: the Roboflow-compatible inference server (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from speedmap.cli.common import clean_errors, err


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
    timeout_s: float = typer.Option(30.0, "--timeout", help="Per-request inference timeout (504 after)."),
    max_body_mb: float = typer.Option(32.0, "--max-body-mb", help="Largest request body accepted (413 above)."),
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

    store = models_dir or default_models_dir()
    ids = [m.id for m in list_models(store)]
    cfg = ServeConfig(models_dir=str(store), api_key=api_key, workers=workers, threads=threads, providers=providers,
                      max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size, timeout_s=timeout_s,
                      eager=eager, allow_urls=bool(allow_urls), url_allowlist=list(allow_urls),
                      max_body_bytes=int(max_body_mb * 1024 * 1024))  # fmt: skip
    err.print(f"speedmap serving {len(ids)} model(s) from {escape(str(store))} "
              f"({'loaded at startup' if eager else 'loaded on first use'}): {escape(', '.join(ids)) or 'none'}",
              highlight=False, soft_wrap=True)  # fmt: skip
    err.print(
        f"listening on http://{host}:{port}  (POST /{{project}}/{{version}}, /infer/object_detection, "
        f"/model/registry, /metrics, /docs){'; API key required' if api_key else ''}",
        highlight=False,
    )
    kw = {"host": host, "port": port, "log_level": log_level, "loop": loop, "http": http,
          "timeout_keep_alive": 30, "access_log": False}  # fmt: skip
    if use_ray:
        try:
            from speedmap.serve.ray_app import run
        except ImportError as exc:
            err.print(f"[bold red]error:[/] --ray needs Ray Serve: pip install 'speedmap[ray]' ({exc})")
            raise typer.Exit(2) from None
        run(cfg, replicas, host, port)
        return
    if workers > 1:
        import os

        os.environ["SPEEDMAP_SERVE_CONFIG"] = cfg.to_env()
        uvicorn.run("speedmap.serve.app:app_from_env", factory=True, workers=workers, **kw)
    else:
        uvicorn.run(create_app(cfg), **kw)
