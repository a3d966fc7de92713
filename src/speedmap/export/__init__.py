"""Export trained checkpoints to ONNX (+ int8/fp16 variants) for the engine. Needs torch (``train`` extra)."""

from speedmap.export.onnx import ExportError, export_model, find_checkpoint

__all__ = ["ExportError", "export_model", "find_checkpoint"]
