"""The browser page: static files shipped in the package (``static/``), and the onnxruntime-web runtime
files copied next to them by the npm build (``static/vendor/``, not committed).

A web bundle is the page, the runtime files, ``model.json`` and ``model.onnx`` in one folder; the server
serves it per model at ``/web/{project}/{version}/`` and ``speedmap export --format web`` writes it."""

from __future__ import annotations

import functools
from pathlib import Path

from speedmap.errors import SpeedmapError
from speedmap.jsonfile import JsonFileError, read_json
from speedmap.modelstore import META_FILE, MODEL_FILE

STATIC_DIR = Path(__file__).parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"
PAGE_FILES = ("index.html", "app.js", "detector.js")
BUILD_COMMAND = "npm ci --ignore-scripts --no-audit --no-fund --prefix web && npm run build --prefix web"
# Content types browsers insist on: module scripts must be JavaScript, and WebAssembly streaming
# compilation needs application/wasm.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".onnx": "application/octet-stream",
}
# Cross-origin isolation: SharedArrayBuffer (multithreaded WebAssembly) and a fine performance.now().
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


class WebBuildMissing(SpeedmapError):
    """The onnxruntime-web files have not been built into the package."""


def vendor_manifest() -> dict:
    """What the npm build copied (``{"onnxruntime-web": version, "files": [...]}``); raises
    :class:`WebBuildMissing` with the command to run when the build is missing or incomplete."""
    try:
        doc = read_json(VENDOR_DIR / "manifest.json")
    except (FileNotFoundError, JsonFileError):
        doc = None
    missing = [] if doc else ["manifest.json"]
    if doc:
        missing = [f for f in doc.get("files", []) if not (VENDOR_DIR / f).is_file()]
    if missing:
        raise WebBuildMissing(
            f"the browser page's onnxruntime-web files are not built ({', '.join(missing)} missing in "
            f"{VENDOR_DIR}): run `{BUILD_COMMAND}` from the speedmap checkout first"
        )
    return doc


def bundle_files() -> list[tuple[str, Path]]:
    """``(relative path, source file)`` for the page and the runtime files of a bundle (not the model)."""
    manifest = vendor_manifest()
    files = [(name, STATIC_DIR / name) for name in PAGE_FILES]
    files += [(f"vendor/{name}", VENDOR_DIR / name) for name in [*manifest["files"], "manifest.json"]]
    return files


KEY_COOKIE = "speedmap_api_key"  # set on /web/... when the page is opened with ?api_key=, for its own requests


@functools.cache
def _bundle_index() -> dict[str, Path]:
    return dict(bundle_files())


def bundle_path(model_folder: Path, rel: str) -> Path | None:
    """The file behind ``rel`` in the web bundle of the model in ``model_folder`` (the page, the runtime
    files, ``model.json`` and the graph), or None: only those names resolve, so no path escapes."""
    if rel == META_FILE:
        return model_folder / META_FILE
    try:
        graph = read_json(model_folder / META_FILE).get("file", MODEL_FILE)
    except (JsonFileError, AttributeError):
        graph = MODEL_FILE
    if rel == graph and "/" not in graph and "\\" not in graph and graph not in ("", ".", ".."):
        return model_folder / graph
    return _bundle_index().get(rel)


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix, "application/octet-stream")
