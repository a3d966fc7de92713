"""The inference engine: ONNX Runtime behind ``Model.load(...).predict(...)`` -> :class:`Detections`.

No PyTorch. Evaluation, ``predict``, the server and the benchmark all run models through this class,
with the one preprocessing function (:func:`speedmap.preprocess.letterbox`) and the one
postprocessing function (:func:`speedmap.postprocess.postprocess`) that training validation uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speedmap.detections import Detections
from speedmap.errors import SpeedmapError
from speedmap.imageio import as_rgb
from speedmap.modelstore import ModelFormatError, ModelMeta, resolve
from speedmap.postprocess import postprocess
from speedmap.preprocess import Letterbox, letterbox, to_input
from speedmap.runtime import available_cpus, resolve_providers, session_options

_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass(frozen=True)
class Prepared:
    """One image ready for the network: the letterboxed square, its mapping back, original (w, h), and the
    decoded RGB image itself (``None`` once dropped: a server keeps it only to draw on it)."""

    square: np.ndarray
    letterbox: Letterbox
    image_wh: tuple[int, int]
    image: np.ndarray | None

    def without_image(self) -> Prepared:
        """The same, holding only the network's input (a 1 MP image is 3 MB; the square at 256 px 0.2 MB)."""
        return Prepared(self.square, self.letterbox, self.image_wh, None)


class Model:
    """An exported detector loaded in ONNX Runtime. Thread-safe: one instance serves many threads."""

    def __init__(self, meta: ModelMeta, providers: str | list[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.meta = meta
        self.names: tuple[str, ...] = tuple(meta.classes)
        self.imgsz = meta.imgsz
        self.threads = int(threads) if threads else available_cpus()
        opts = session_options(self.threads)
        try:
            self.session = ort.InferenceSession(str(meta.onnx), opts, providers=resolve_providers(providers))
        except SpeedmapError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt graphs
            raise ModelFormatError(f"{meta.onnx} cannot be loaded by ONNX Runtime ({exc})") from exc
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._dtype = _ONNX_TYPES.get(inp.type, np.float32)
        self.batch: int | None = inp.shape[0] if isinstance(inp.shape[0], int) else None

    @classmethod
    def load(
        cls,
        path_or_id: str | Path,
        providers: str | list[str] | None = None,
        threads: int | None = None,
        models_dir: str | Path | None = None,
    ) -> Model:
        """A model by folder path or by ``project/version`` id in the store (``models_dir``, default
        ``$SPEEDMAP_MODELS`` or ``./models``). ``providers``: ``"cpu"`` (default), ``"cuda"``,
        ``"tensorrt"``, ``"openvino"`` or ONNX Runtime names; ``threads`` defaults to the cores this
        process may use (affinity and cgroup quota)."""
        return cls(resolve(path_or_id, models_dir), providers, threads)

    @property
    def id(self) -> str:
        return self.meta.id

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def info(self) -> dict[str, Any]:
        """What runs the model: recorded in benchmark and evaluation provenance."""
        import onnxruntime as ort

        return {
            "model_id": self.id,
            "path": str(self.meta.path),
            "size": self.meta.doc.get("size"),
            "precision": self.meta.doc.get("precision", "fp32"),
            "imgsz": self.imgsz,
            "batch": self.batch or "dynamic",
            "providers": self.providers,
            "intra_op_threads": self.threads,
            "inter_op_threads": 1,
            "onnxruntime": ort.__version__,
        }

    # The three stages, public so that benchmarks can time them apart.
    def prepare(self, image: Any, channels: str = "rgb") -> Prepared:
        """Decode (if needed) and letterbox one image."""
        rgb = as_rgb(image, channels)
        sq, box = letterbox(rgb, self.imgsz)
        return Prepared(sq, box, (rgb.shape[1], rgb.shape[0]), rgb)

    def forward(self, squares: Sequence[np.ndarray]) -> np.ndarray:
        """Network output ``(B, N, 4 + nc)`` (boxes xyxy in input pixels, class probabilities)."""
        x = to_input(list(squares))
        if self._dtype is not np.float32:
            x = x.astype(self._dtype)
        if self.batch is None:
            return self.session.run(None, {self._input_name: x})[0].astype(np.float32, copy=False)
        outs = []
        for i in range(0, len(x), self.batch):
            chunk = x[i : i + self.batch]
            n = len(chunk)
            if n < self.batch:  # a fixed-batch graph: pad with empty images
                chunk = np.concatenate([chunk, np.zeros((self.batch - n, *chunk.shape[1:]), chunk.dtype)])
            outs.append(self.session.run(None, {self._input_name: chunk})[0][:n])
        return np.concatenate(outs).astype(np.float32, copy=False)

    def finish(
        self,
        pred: np.ndarray,
        prepared: Prepared,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 300,
        classes: Sequence[int | str] | None = None,
        agnostic: bool = False,
    ) -> Detections:
        """Postprocess one image's network output into original-image :class:`Detections`."""
        det = postprocess(
            pred, conf=conf, iou=iou, max_det=max_det, classes=self._class_ids(classes), agnostic=agnostic
        )
        return Detections(
            prepared.letterbox.to_original(det.xyxy), det.confidence, det.class_id, self.names, prepared.image_wh
        )

    def predict(
        self,
        images: Any,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 300,
        classes: Sequence[int | str] | None = None,
        agnostic: bool = False,
        channels: str = "rgb",
    ) -> Detections | list[Detections]:
        """Detect objects in one image (path, bytes, PIL image, numpy array) or a list of them (one
        batch); returns one :class:`Detections` or a list in the same order. ``channels`` says whether
        numpy colour arrays are ``"rgb"`` or ``"bgr"``; ``classes`` filters by id or name."""
        single = not isinstance(images, list | tuple)
        batch = [images] if single else list(images)
        prepared = [self.prepare(im, channels) for im in batch]
        if not prepared:
            return []
        pred = self.forward([p.square for p in prepared])
        out = [self.finish(p, pr, conf, iou, max_det, classes, agnostic) for p, pr in zip(pred, prepared, strict=True)]
        return out[0] if single else out

    def _class_ids(self, classes: Sequence[int | str] | None) -> list[int] | None:
        if classes is None:
            return None
        ids = []
        for c in classes:
            if isinstance(c, str) and not c.isdigit():
                if c not in self.names:
                    raise ValueError(f"unknown class {c!r}; the model's classes: {', '.join(self.names)}")
                ids.append(self.names.index(c))
            else:
                ids.append(int(c))
        return ids
