"""``speedmap export --format web``: a self-contained static folder that runs a model in the browser
(the page, onnxruntime-web, ``model.json`` and the graph). No torch needed."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from speedmap.errors import SpeedmapError
from speedmap.modelstore import META_FILE, ModelMeta, resolve
from speedmap.web import ISOLATION_HEADERS, bundle_files

# Static hosts that read a `_headers` file (Netlify, Cloudflare Pages) send these with every file, which
# makes the page cross-origin isolated (multithreaded WebAssembly, fine-grained timers).
HEADERS_FILE = "/*\n" + "".join(f"  {k}: {v}\n" for k, v in ISOLATION_HEADERS.items())


def export_web(source: str | Path, out_dir: str | Path, models_dir: str | Path | None = None) -> tuple[ModelMeta, Path]:
    """Write the web bundle of ``source`` (a model folder or a ``project/version`` id in ``models_dir``)
    to ``out_dir``. An existing ``out_dir`` must be empty or a previous bundle, which is replaced."""
    meta = resolve(source, models_dir)
    files = bundle_files()  # fails first, with the build command, when onnxruntime-web is not built
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "index.html").is_file())):
        raise SpeedmapError(f"{out} exists and is not an empty folder or a previous web bundle; choose another --out")
    if out.resolve() == meta.path.resolve():
        raise SpeedmapError(f"--out {out} is the model folder itself; choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel, src in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / rel)
        shutil.copyfile(meta.path / META_FILE, tmp / META_FILE)
        shutil.copyfile(meta.onnx, tmp / meta.onnx.name)
        (tmp / "_headers").write_text(HEADERS_FILE)
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta, out
