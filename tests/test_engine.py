"""The ONNX Runtime engine: parity with the PyTorch model, every input kind, batches, class filters,
the model store, providers and thread defaults, int8 export, and clear errors."""

from __future__ import annotations

import collections
import io
import json
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from speedmap.data import load_dataset
from speedmap.detections import Detections
from speedmap.engine import Model
from speedmap.imageio import ImageReadError, as_rgb
from speedmap.modelstore import ModelFormatError, ModelNotFoundError, list_models
from speedmap.runtime import ProviderError, _cgroup_cpus, available_cpus

torch = pytest.importorskip("torch")


def _dataset(run: Path) -> Path:
    return Path(json.loads((run / "train.json").read_text())["dataset"]["abspath"])


@pytest.fixture(scope="module")
def model(model_store: Path) -> Model:
    return Model.load("shapes/1", models_dir=model_store)


def _close(a: Detections, b: Detections, tol: float) -> None:
    assert len(a) == len(b)
    assert (a.class_id == b.class_id).all()
    assert np.abs(a.xyxy - b.xyxy).max(initial=0) <= tol
    assert np.abs(a.confidence - b.confidence).max(initial=0) <= 1e-3


def test_onnx_engine_matches_pytorch_model(tiny_run: Path, model: Model) -> None:
    from speedmap.train.checkpoint import load_checkpoint, model_from_checkpoint
    from speedmap.train.data import ValData
    from speedmap.train.validate import evaluate_checkpoint, predict_split

    data = _dataset(tiny_run)
    torch_metrics = evaluate_checkpoint(tiny_run / "best.pt", data)
    engine_metrics = model.meta.doc["metrics"]
    assert engine_metrics["split"] == "test"
    assert torch_metrics.map50 > 0.1  # the model found something, so the comparison means something
    assert abs(engine_metrics["map"] - torch_metrics.map) <= 0.001
    assert abs(engine_metrics["map50"] - torch_metrics.map50) <= 0.001

    split = load_dataset(data).split("test")
    ckpt = load_checkpoint(tiny_run / "best.pt")
    torch_dets = predict_split(
        model_from_checkpoint(ckpt), ValData(split, ckpt["imgsz"]), torch.device("cpu"), conf=0.05, iou=0.45
    )
    engine_dets = model.predict([r.path for r in split.records], conf=0.05, iou=0.45)
    assert sum(len(d) for d in torch_dets) > 0
    for t, e in zip(torch_dets, engine_dets, strict=True):
        _close(t, e, 0.5)


def test_every_input_kind_gives_the_same_detections(model: Model, tmp_path: Path) -> None:
    src = _images(model)[0]
    rgb = np.asarray(Image.open(src).convert("RGB"))
    ref = model.predict(src, conf=0.01)
    assert len(ref) > 0 and ref.image_size == (rgb.shape[1], rgb.shape[0])
    _close(ref, model.predict(src.read_bytes(), conf=0.01), 0.0)
    _close(ref, model.predict(str(src), conf=0.01), 0.0)
    _close(ref, model.predict(Image.open(src), conf=0.01), 0.0)
    _close(ref, model.predict(rgb, conf=0.01), 0.0)
    _close(ref, model.predict(np.ascontiguousarray(rgb[:, :, ::-1]), channels="bgr", conf=0.01), 0.0)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    _close(ref, model.predict(rgba, conf=0.01), 0.0)
    _close(ref, model.predict(rgb.astype(np.uint16) * 257, conf=0.01), 0.0)  # 16-bit
    _close(ref, model.predict(rgb.astype(np.float32) / 255, conf=0.01), 0.0)

    # a 16-bit PNG file, grayscale files and arrays
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    g = model.predict(grey, conf=0.01)
    _close(g, model.predict(tmp_path / "g16.png", conf=0.01), 0.0)
    _close(g, model.predict(grey[:, :, None], conf=0.01), 0.0)


def test_exif_rotated_jpeg_is_seen_upright(model: Model, tmp_path: Path) -> None:
    rgb = np.asarray(Image.open(_images(model)[0]).convert("RGB"))
    upright = tmp_path / "upright.png"
    Image.fromarray(rgb).save(upright)
    # store the pixels rotated and tag orientation 6 (rotate 90 CW to display): the engine must undo it
    stored = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "rotated.png"
    stored.save(rotated, exif=exif.tobytes())
    a, b = model.predict(upright, conf=0.01), model.predict(rotated, conf=0.01)
    assert b.image_size == a.image_size
    _close(a, b, 0.0)


def test_batches_keep_order_and_match_single_images(model: Model) -> None:
    paths = _images(model)[:5]
    batch = model.predict(paths, conf=0.01)
    assert isinstance(batch, list) and len(batch) == 5
    for p, d in zip(paths, batch, strict=True):
        _close(model.predict(p, conf=0.01), d, 0.01)
    assert model.predict([]) == []


def test_fixed_batch_graph_pads_and_chunks(tiny_run: Path, tmp_path: Path) -> None:
    from speedmap.export import export_model

    meta = export_model(tiny_run, tmp_path / "p" / "b2", batch=2, evaluate=False, log=lambda m: None)
    m2 = Model(meta)
    assert m2.batch == 2 and meta.doc["input"]["batch"] == 2
    dyn = Model.load(Path(meta.path).parents[0].parent / "p" / "b2")  # by folder path
    paths = _images(m2)[:3]
    for a, b in zip(m2.predict(paths, conf=0.01), dyn.predict(paths, conf=0.01), strict=True):
        _close(a, b, 0.0)


def test_class_filter_thresholds_and_output_formats(model: Model) -> None:
    src = _images(model)[0]
    det = model.predict(src, conf=0.01)
    assert (np.diff(det.confidence) <= 0).all() and det.confidence.min() >= 0.01
    first = int(det.class_id[0])
    only = model.predict(src, conf=0.01, classes=[model.names[first]])
    assert len(only) and set(only.class_id.tolist()) == {first}
    assert set(model.predict(src, conf=0.01, classes=[first]).class_id.tolist()) == {first}
    assert len(model.predict(src, conf=0.01, max_det=2)) == 2
    with pytest.raises(ValueError, match="unknown class 'zebra'"):
        model.predict(src, classes=["zebra"])

    rf = det.to_roboflow()
    assert rf["image"] == {"width": det.image_size[0], "height": det.image_size[1]}
    p = rf["predictions"][0]
    x1, _, x2, _ = det.xyxy[0].tolist()
    assert p["x"] == pytest.approx((x1 + x2) / 2, abs=0.06) and p["width"] == pytest.approx(x2 - x1, abs=0.06)
    assert p["class"] == model.names[p["class_id"]] and 0 < p["confidence"] <= 1
    assert len({q["detection_id"] for q in rf["predictions"]}) == len(det)
    coco = det.to_coco(7)
    assert coco[0]["image_id"] == 7 and coco[0]["category_id"] == first + 1
    assert coco[0]["bbox"][2] == pytest.approx(x2 - x1)


def test_supervision_conversion_when_installed(model: Model) -> None:
    pytest.importorskip("supervision")
    det = model.predict(_images(model)[0], conf=0.01)
    sv = det.to_supervision()
    assert len(sv) == len(det) and list(sv.data["class_name"]) == det.class_name


def test_store_listing_and_unknown_ids(model_store: Path, tmp_path: Path) -> None:
    assert [m.id for m in list_models(model_store)] == ["shapes/1"]
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'shapes/9'.*shapes/1"):
        Model.load("shapes/9", models_dir=model_store)
    with pytest.raises(ModelNotFoundError, match="no models in"):
        Model.load("x/1", models_dir=tmp_path / "empty")

    broken = tmp_path / "store" / "p" / "1"
    shutil.copytree(model_store / "shapes" / "1", broken)
    (broken / "model.json").write_text('{"classes": ["a"], "input": {')
    with pytest.raises(ModelFormatError, match=r"model\.json"):
        Model.load(broken)
    shutil.copy(model_store / "shapes" / "1" / "model.json", broken / "model.json")
    (broken / "model.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelFormatError, match="cannot be loaded by ONNX Runtime"):
        Model.load(broken)


def test_providers_and_threads(model_store: Path, tmp_path: Path) -> None:
    m = Model.load("shapes/1", models_dir=model_store, threads=1)
    info = m.info()
    assert info["providers"] == ["CPUExecutionProvider"] and info["intra_op_threads"] == 1
    assert Model.load("shapes/1", models_dir=model_store).threads == available_cpus()
    with pytest.raises(ProviderError, match="not available"):
        Model.load("shapes/1", models_dir=model_store, providers="tensorrt")
    # cgroup quotas: v2 cpu.max and v1 CFS
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpus(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpus(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert _cgroup_cpus(v1) == 3.0


def test_int8_export_keeps_accuracy(tiny_run: Path, tmp_path: Path, model: Model) -> None:
    pytest.importorskip("onnx")
    from speedmap.export import export_model

    meta = export_model(tiny_run, tmp_path / "q" / "int8", int8=_dataset(tiny_run), calib_images=16, log=lambda m: None)
    assert meta.doc["precision"] == "int8"
    fp32 = model.meta.doc["metrics"]["map50"]
    assert meta.doc["metrics"]["map50"] >= fp32 - 0.1
    # int8 pays only if ONNX Runtime fuses the network into QLinear kernels: float Convs only at the head's
    # outputs (box and class per level), and Q/DQ left only at the input and where float starts, not
    # around every activation
    ops = _optimized_ops(tmp_path / "q" / "int8" / "model.onnx", tmp_path / "opt.onnx")
    assert ops["QLinearConv"] > 10 and ops["Conv"] == 6  # box and class outputs at 3 levels
    assert ops["QuantizeLinear"] + ops["DequantizeLinear"] <= 16, ops
    # int8_float: the module's convolutions run as float Convs, with Q/DQ only where the float island
    # starts and ends
    export_model(
        tiny_run,
        tmp_path / "f" / "int8",
        int8=_dataset(tiny_run),
        calib_images=16,
        evaluate=False,
        log=lambda m: None,
        int8_float=["backbone.stage2"],
    )
    ops_f = _optimized_ops(tmp_path / "f" / "int8" / "model.onnx", tmp_path / "f.onnx")
    assert ops_f["Conv"] >= ops["Conv"] + 4 and ops_f["QLinearConv"] <= ops["QLinearConv"] - 4
    assert ops_f["QuantizeLinear"] + ops_f["DequantizeLinear"] <= ops["QuantizeLinear"] + ops["DequantizeLinear"] + 4


def test_int8_keeps_only_the_head_outputs_and_decode_in_float(tmp_path: Path) -> None:
    from speedmap.export.quantize import float_nodes
    from speedmap.models.head import STRIDES

    graph = _traced_graph("fast", tmp_path)
    kept = set(float_nodes(graph))
    convs = {n.name for n in graph.node if n.op_type == "Conv"}
    head_outputs = {f"/head/{b}.{i}/{b}.{i}.2/Conv" for b in ("box", "cls") for i in range(len(STRIDES))}
    assert kept & convs == head_outputs
    assert {"Softmax", "ReduceSum", "Sigmoid"} <= {n.op_type for n in graph.node if n.name in kept}
    assert not [n for n in kept if n.startswith(("/backbone/", "/neck/"))]


def test_int8_float_modules_stay_in_float_and_nothing_else_does(tmp_path: Path) -> None:
    from speedmap.errors import SpeedmapError
    from speedmap.export.quantize import float_nodes
    from speedmap.models import SIZES

    graph = _traced_graph("accurate", tmp_path)
    kept = set(float_nodes(graph, SIZES["accurate"].int8_float))
    stage2 = {n.name for n in graph.node if n.name.startswith("/backbone/stage2/")}
    assert sum(n.op_type == "Conv" for n in graph.node if n.name in stage2) >= 4  # the block's convolutions
    assert stage2 <= kept
    assert kept - stage2 == set(float_nodes(graph))  # besides the module, only the head outputs and decode
    with pytest.raises(SpeedmapError, match=r"no node of module 'neck\.td9'"):
        float_nodes(graph, ["neck.td9"])


def _traced_graph(size: str, tmp_path: Path) -> Any:
    """An untrained ``size`` (3 classes) exported as ``speedmap export`` traces it, at 64 px: its ONNX graph."""
    onnx = pytest.importorskip("onnx")
    import torch

    from speedmap.export.onnx import trace_to_onnx
    from speedmap.models import create_model

    model = create_model(size, 3).eval().fuse()
    model.head.fix_anchors(64)
    trace_to_onnx(model, torch.zeros(1, 3, 64, 64), tmp_path / "m.onnx", dynamic=True)
    return onnx.load(str(tmp_path / "m.onnx")).graph


def _optimized_ops(path: Path, dst: Path) -> collections.Counter[str]:
    import onnx

    from speedmap.runtime import session_options

    opts = session_options(1)
    opts.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(str(dst)).graph.node)


def _png_header_only(path: Path, w: int, h: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )
    return path


def test_huge_and_broken_images_are_clear_errors(model: Model, tmp_path: Path) -> None:
    huge = _png_header_only(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(ImageReadError, match="20000x20000 = 400 MP, above the 100 MP pixel limit"):
        model.predict(huge)
    with pytest.raises(ImageReadError, match="pixel limit"):
        model.predict(huge.read_bytes())
    with pytest.raises(ImageReadError, match="not a readable image"):
        model.predict(b"not an image")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format="JPEG")
    with pytest.raises(ImageReadError):
        model.predict(buf.getvalue()[:200])
    with pytest.raises(ImageReadError, match="not an image"):
        as_rgb(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(TypeError, match="unsupported image input"):
        model.predict(3.5)


def _images(model: Model) -> list[Path]:
    run = Path(model.meta.doc["training"]["checkpoint"]).parent
    return [r.path for r in load_dataset(_dataset(run)).split("test").records]


def test_fp16_export_runs_and_agrees(tiny_run: Path, tmp_path: Path, model: Model) -> None:
    from speedmap.export import export_model

    meta = export_model(tiny_run, tmp_path / "h" / "fp16", half=True, evaluate=False, log=lambda m: None)
    assert meta.doc["precision"] == "fp16" and meta.doc["input"]["dtype"] == "float16"
    half = Model(meta)
    src = _images(model)[0]
    a, b = model.predict(src, conf=0.05), half.predict(src, conf=0.05)
    assert len(b) > 0 and b.xyxy.dtype == np.float32
    assert abs(len(a) - len(b)) <= 1  # fp16 rounding may move a box across the threshold


def test_letterbox_to_original_clips_to_the_image() -> None:
    from speedmap.preprocess import Letterbox

    box = Letterbox(scale=0.5, pad=(0, 16), image_hw=(64, 128))
    out = box.to_original(np.array([[-4.0, 10.0, 70.0, 60.0]], dtype=np.float32))
    assert out.tolist() == [[0.0, 0.0, 128.0, 64.0]]
