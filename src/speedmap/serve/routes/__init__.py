"""The server's routes, one router per family: ``ops`` (health, metrics), ``v1`` (inference server),
``web`` (browser page per model) and ``legacy`` (hosted API, a catch-all registered last)."""
