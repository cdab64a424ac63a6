"""One landmark-model interface, two backends: a PyTorch model (from a training checkpoint, or any
`PFLD` with its `ModelSpec`) and an exported ONNX file run by onnxruntime (fp32 or int8). Evaluation,
export's parity, accuracy and latency checks, and the photo pipeline all call models through it.

Angles are radians here, as everywhere inside pfld; ONNX files store degrees (their ``pose`` output,
for apps), converted at this edge.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import nn

from pfld.inference.spec import ModelSpec, decode_metadata

if TYPE_CHECKING:
    import onnxruntime

#: Input and output names of exported models.
INPUT_NAME, OUTPUT_NAME, POSE_NAME = "image", "landmarks", "pose"


class LandmarkModel(Protocol):
    spec: ModelSpec

    @property
    def has_pose(self) -> bool: ...

    def __call__(self, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, 3, S, S) float32 normalised crops -> (N, K, 2) landmarks in [0, 1] of the crop and
        (N, 3) yaw, pitch, roll in radians (None without a pose output)."""
        ...


def onnx_session(path: str | Path, threads: int = 0) -> onnxruntime.InferenceSession:
    """The one way pfld opens an ONNX file: a CPU session with ``threads`` intra-op threads (0:
    onnxruntime's default, all cores) and none between operators (PFLD is one chain of layers)."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(f'ONNX models need onnxruntime ({error}): pip install -e ".[export]"') from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads or 0)
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class TorchLandmarkModel:
    """A PyTorch landmark model (a `PFLD`: forward gives the landmarks) and its spec.
    Runs on the module's device in eval mode (its mode is restored); the pose comes from
    ``forward_with_pose`` when ``spec.with_pose`` and the module has it."""

    def __init__(self, model: nn.Module, spec: ModelSpec) -> None:
        self.model = model
        self.spec = spec.with_pose_output(spec.with_pose and getattr(model, "auxiliary", None) is not None)

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, with_pose: bool | None = None, threads: int | None = None
    ) -> TorchLandmarkModel:
        """A training checkpoint's model (`load_checkpoint`): by default with its pose net when its loss
        trained one."""
        from pfld.inference.checkpoint import load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        return cls(*load_checkpoint(checkpoint, with_pose=with_pose))

    @property
    def has_pose(self) -> bool:
        return self.spec.with_pose

    @torch.no_grad()
    def __call__(self, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        weight = next(itertools.chain(self.model.parameters(), self.model.buffers()), None)
        device = weight.device if weight is not None else torch.device("cpu")
        batch = torch.as_tensor(
            np.ascontiguousarray(images, np.float32) if isinstance(images, np.ndarray) else images
        )
        batch = batch.to(device=device, dtype=torch.float32)
        was_training = self.model.training
        self.model.eval()
        try:
            if self.has_pose:
                landmarks, angles = self.model.forward_with_pose(batch)
                return _numpy(landmarks), _numpy(angles)
            return _numpy(self.model(batch)), None
        finally:
            self.model.train(was_training)


class OnnxLandmarkModel:
    """An ONNX file written by `python -m export` (its ``pfld.*`` metadata is its `ModelSpec`)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = onnx_session(path, threads or 0)
        meta = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.outputs = [output.name for output in self.session.get_outputs()]
        self.spec = ModelSpec.from_metadata(meta, where=str(path)).with_pose_output(POSE_NAME in self.outputs)

    @property
    def has_pose(self) -> bool:
        return self.spec.with_pose

    def __call__(self, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        feeds = {INPUT_NAME: np.ascontiguousarray(images, np.float32)}
        results = dict(zip(self.outputs, self.session.run(self.outputs, feeds), strict=True))
        pose = results.get(POSE_NAME)
        return results[OUTPUT_NAME], None if pose is None else np.deg2rad(pose)


def load_landmark_model(
    path: str | Path, threads: int | None = None, with_pose: bool | None = None
) -> LandmarkModel:
    """A `.ckpt` training checkpoint or an exported `.onnx` file, by its suffix. ``with_pose``: a
    checkpoint's pose net (`TorchLandmarkModel.from_checkpoint`); an ONNX file has what it was exported
    with."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model not found (a .ckpt checkpoint or an exported .onnx file)")
    if path.suffix == ".onnx":
        return OnnxLandmarkModel(path, threads)
    if path.suffix == ".ckpt":
        return TorchLandmarkModel.from_checkpoint(path, with_pose=with_pose, threads=threads)
    raise ValueError(f"{path}: expected a .ckpt checkpoint or an .onnx model, got {path.suffix!r}")


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
