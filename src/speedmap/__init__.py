"""speedmap: Fast or Accurate? Measure the detector tradeoffs on your own data and hardware."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Detections", "Model", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import speedmap` stays light (no onnxruntime) until the engine is used.
    if name == "Model":
        from speedmap.engine import Model

        return Model
    if name == "Detections":
        from speedmap.detections import Detections

        return Detections
    raise AttributeError(f"module 'speedmap' has no attribute {name!r}")
