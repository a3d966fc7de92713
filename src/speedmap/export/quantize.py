"""Static int8 quantization (QDQ) with ONNX Runtime, calibrated on letterboxed dataset images."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from speedmap.errors import SpeedmapError
from speedmap.imageio import ImageReadError, read_image
from speedmap.preprocess import letterbox, to_input


class _Images:
    """ONNX Runtime's CalibrationDataReader protocol over image files, one image per batch; an image that
    no longer decodes (changed since it was checked) is skipped and named."""

    def __init__(self, paths: list[Path], imgsz: int, input_name: str, log: Callable[[str], None]) -> None:
        self.paths, self.imgsz, self.input_name, self.log = iter(paths), imgsz, input_name, log

    def get_next(self) -> dict[str, np.ndarray] | None:
        for p in self.paths:
            try:
                sq, _ = letterbox(read_image(p), self.imgsz)
            except ImageReadError as exc:
                self.log(f"calibration skips an image: {exc}")
                continue
            return {self.input_name: to_input([sq])}
        return None


def calibration_paths(data: str | Path, n: int, log: Callable[[str], None] = print) -> list[Path]:
    """Up to ``n`` images from the dataset's train split (else any split), spread evenly over the images
    that decode (the records training reads); skipped images are logged by name."""
    from speedmap.data import load_dataset
    from speedmap.data.verify import drop_undecodable

    ds = load_dataset(data, auto_split=True, decode=("train",))
    if not ds.split_records("train"):
        drop_undecodable(ds)
    for line in ds.problems.report_lines(data):
        log(line)
    recs = ds.split_records("train") or [r for _, r in ds.all_records()]
    if not recs:
        raise SpeedmapError(f"{data} has no images to calibrate int8 quantization on")
    idx = np.linspace(0, len(recs) - 1, min(n, len(recs))).round().astype(int)
    return [recs[i].path for i in sorted(set(idx.tolist()))]


def quantize_int8(
    src: Path,
    dst: Path,
    data: str | Path,
    imgsz: int,
    n: int = 128,
    log: Callable[[str], None] = print,
    float_modules: Sequence[str] = (),
) -> None:
    """Quantize the network to int8 (per-channel 7-bit weights, uint8 activations, QDQ format). The head's
    output convolutions, the decode after them and the nodes of ``float_modules`` (module paths, the
    size's ``int8_float``) stay in float (:func:`float_nodes`).

    Every op type the quantizer supports is quantized, activations included: with only convolutions
    listed, a Q/DQ pair stayed around each ReLU/SiLU, so ONNX Runtime could not fuse the chain into
    QLinear kernels and each layer went back to float and forth (BENCHMARKS.md, issue 17)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    paths = calibration_paths(data, n, log)
    log(f"calibrating int8 on {len(paths)} images from {data}")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        quantize_static(
            str(pre),
            str(dst),
            _Images(paths, imgsz, "images", log),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # 7-bit weights: u8 x s8 products saturate the 16-bit sums of AVX2 integer kernels without VNNI
            # (most laptops and many servers); at 8 bits bccd lost 9-12 points of mAP50-95 on an AVX2-only
            # AMD EPYC, at 7 bits 0.0-1.0 (BENCHMARKS.md, issue 33, fourth session)
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=float_nodes(graph, float_modules),
        )


def float_nodes(graph: object, modules: Sequence[str] = ()) -> list[str]:
    """Names of the nodes kept in float: the head's output convolutions (the last convolution on each
    path to the head's raw output, the Transpose to ``(B, N, C)``), the decode after that output, and
    the nodes of ``modules`` (module paths such as ``backbone.stage2``, matched by the exporter's scoped
    node names, ``/backbone/stage2/...``).

    The decode's box-bin softmax, grid offsets and class sigmoid mix value ranges that one int8 scale
    cannot hold. The output convolutions write box-bin and class logits, whose quantization cost
    `accurate` about 0.45 points of mAP50-95 on average for no measurable speed (BENCHMARKS.md, issue 17)."""
    nodes = list(graph.node)  # type: ignore[attr-defined]
    scopes = tuple("/" + m.replace(".", "/") + "/" for m in modules)
    in_modules = [n.name for n in nodes if scopes and n.name.startswith(scopes)]
    for m, scope in zip(modules, scopes, strict=True):
        if not any(name.startswith(scope) for name in in_modules):
            raise SpeedmapError(f"int8: no node of module {m!r} in the graph, so it cannot be kept in float")
    transposes = [n for n in nodes if n.op_type == "Transpose"]
    if not transposes:
        return in_modules
    producer = {o: n for n in nodes for o in n.output}
    keep: set[str] = set()
    stack = [transposes[-1]]
    while stack:  # back from the raw output to the convolutions that write it
        n = stack.pop()
        if n.name in keep:
            continue
        keep.add(n.name)
        if n.op_type != "Conv":
            stack.extend(producer[i] for i in n.input if i in producer)
    tainted = {o for n in nodes if n.name in keep for o in n.output}
    out = []
    for n in nodes:  # ONNX graphs are topologically sorted
        if n.name in keep or any(i in tainted for i in n.input):
            tainted.update(n.output)
            out.append(n.name)
    return list(dict.fromkeys([*in_modules, *out]))
