"""speedmap: Fast or Accurate? Measure the detector tradeoffs on your own data and hardware."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
