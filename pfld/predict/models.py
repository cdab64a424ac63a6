"""A landmark model to run on crops, from a training checkpoint (PyTorch) or an exported ONNX file
(fp32 or int8): the same interface, and the input description each carries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class InputSpec:
    """What a model's input is: the side of its square crop, the crop rule and the normalisation."""

    input_size: int
    crop_scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_points: int
    scheme: str


class LandmarkModel(Protocol):
    spec: InputSpec
    has_pose: bool

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, 3, S, S) float32 normalised crops -> (N, K, 2) landmarks in [0, 1] of the crop and
        (N, 3) yaw, pitch, roll in degrees (None without a pose output)."""
        ...


class TorchLandmarkModel:
    """A `PFLDModule` checkpoint on the CPU; its pose net is used when its loss trained it."""

    def __init__(self, checkpoint: str | Path, threads: int | None = None) -> None:
        from pfld.inference import load_inference_model

        model, data = load_inference_model(checkpoint, with_pose=None)
        self.model = model
        self.has_pose = model.auxiliary is not None
        self.spec = InputSpec(
            int(data["input_size"]),
            float(data["crop_scale"]),
            tuple(data["mean"]),
            tuple(data["std"]),
            int(data["num_points"]),
            str(data["scheme"]),
        )
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        if not self.has_pose:
            return self.model(batch).numpy(), None
        landmarks, angles = self.model.forward_with_pose(batch)
        return landmarks.numpy(), torch.rad2deg(angles).numpy()


class OnnxLandmarkModel:
    """An ONNX file written by `python -m export` (its `pfld.*` metadata describes the input)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(
                f'ONNX models need onnxruntime ({error}): pip install -e ".[export]"'
            ) from error
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [
            key
            for key in ("pfld.input_size", "pfld.crop_scale", "pfld.mean", "pfld.std", "pfld.num_landmarks")
            if key not in meta
        ]
        if missing:
            raise ValueError(
                f"{path}: not a pfld ONNX model (metadata lacks {missing}); export with python -m export"
            )
        self.spec = InputSpec(
            int(meta["pfld.input_size"]),
            float(meta["pfld.crop_scale"]),
            tuple(json.loads(meta["pfld.mean"])),
            tuple(json.loads(meta["pfld.std"])),
            int(meta["pfld.num_landmarks"]),
            meta.get("pfld.scheme", "unknown"),
        )
        self.outputs = [output.name for output in self.session.get_outputs()]
        self.has_pose = "pose" in self.outputs

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        results = dict(
            zip(
                self.outputs,
                self.session.run(self.outputs, {"image": np.ascontiguousarray(images, np.float32)}),
            )
        )
        return results["landmarks"], results.get("pose")


def load_landmark_model(path: str | Path, threads: int | None = None) -> LandmarkModel:
    """A `.ckpt` training checkpoint or an exported `.onnx` file, by its suffix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model not found (a .ckpt checkpoint or an exported .onnx file)")
    if path.suffix == ".onnx":
        return OnnxLandmarkModel(path, threads)
    if path.suffix == ".ckpt":
        return TorchLandmarkModel(path, threads)
    raise ValueError(f"{path}: expected a .ckpt checkpoint or an .onnx model, got {path.suffix!r}")
