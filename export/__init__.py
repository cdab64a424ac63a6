"""Deploy side: ONNX export of trained PFLD models, checked against PyTorch, and int8 quantisation.
Imports `pfld`, never the reverse. The command is `python -m export ckpt=<checkpoint> out=<folder>`."""

from export.onnx_export import Exported, export_onnx, max_abs_difference, read_metadata

__all__ = ["Exported", "export_onnx", "max_abs_difference", "read_metadata"]
