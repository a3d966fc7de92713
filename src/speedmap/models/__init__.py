"""The detector family (PyTorch): sizes registered by name behind one factory."""

from speedmap.models.detector import SIZES, Detector, SizeSpec, count_flops, count_params, create_model, register_size

__all__ = ["SIZES", "Detector", "SizeSpec", "count_flops", "count_params", "create_model", "register_size"]
