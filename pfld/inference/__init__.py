"""Trained models for inference: their description (`ModelSpec`), checkpoints read in one place
(`load_checkpoint`), and one landmark-model interface with a PyTorch and an onnxruntime backend."""

from pfld.inference.checkpoint import load_checkpoint, read_checkpoint
from pfld.inference.models import (
    LandmarkModel,
    OnnxLandmarkModel,
    TorchLandmarkModel,
    load_landmark_model,
    onnx_session,
)
from pfld.inference.spec import ModelSpec

__all__ = [
    "LandmarkModel",
    "ModelSpec",
    "OnnxLandmarkModel",
    "TorchLandmarkModel",
    "load_checkpoint",
    "load_landmark_model",
    "onnx_session",
    "read_checkpoint",
]
