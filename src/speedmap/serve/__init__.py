"""The inference server: Roboflow-compatible HTTP API over the engine, with micro-batching."""

from speedmap.serve.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
