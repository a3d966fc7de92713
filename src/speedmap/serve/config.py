"""Everything ``speedmap serve`` can set, each with its bound (also passed to worker processes as JSON)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import orjson

from speedmap.imageio import max_pixels


@dataclass
class ServeConfig:
    """Server settings. Every request is bounded by these: body bytes, images, pixels, time and the
    bytes all requests may hold in memory together."""

    models_dir: str = "models"
    api_key: str | None = None
    workers: int = 1
    threads: int | None = None  # ONNX Runtime intra-op threads per worker (default: cores / workers)
    decode_threads: int | None = None
    providers: str | None = None
    max_batch: int = 8
    max_wait_ms: float = 0.0
    queue_size: int = 256
    timeout_s: float = 30.0  # the deadline of a whole request (504 after)
    body_timeout_s: float = 20.0  # the request body must arrive within this (408 after)
    header_timeout_s: float = 10.0  # the request line and headers must arrive within this
    max_head_bytes: int = 64 * 1024  # request line plus headers (431 above)
    max_body_bytes: int = 32 * 1024 * 1024
    max_images: int = 16  # images in one v1 request
    max_pixels: int = field(default_factory=max_pixels)  # per image, and in all images of one request
    max_inflight_bytes: int = 1024 * 1024 * 1024  # bodies and decoded images of all requests (503 above)
    eager: bool = False
    allow_urls: bool = False
    url_allowlist: list[str] = field(default_factory=list)
    url_allow_private: bool = False
    url_max_bytes: int = 20 * 1024 * 1024
    url_timeout_s: float = 5.0

    def to_env(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_env(cls) -> ServeConfig:
        return cls(**orjson.loads(os.environ.get("SPEEDMAP_SERVE_CONFIG", "{}")))
