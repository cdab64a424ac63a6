"""Deploy side: ONNX export of trained PFLD models, checked against PyTorch. Imports `pfld`, never the reverse."""

from export.onnx_export import export_checkpoint, export_onnx, max_abs_difference, read_metadata

__all__ = ["export_checkpoint", "export_onnx", "max_abs_difference", "read_metadata"]
