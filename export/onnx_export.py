"""ONNX export of a PFLD landmark model, self-describing (metadata) and checked against PyTorch.

The exported graph maps `image` (B, C, S, S), float32 (C = 3, RGB, or 1, grey: `pfld.channels`),
normalised with the stored mean and std, to `landmarks` (B, K, 2), x then y, in [0, 1] of the crop (and
optionally `pose` (B, 3), degrees); B is dynamic, C, S and K are fixed. The metadata is the model's `pfld.inference.ModelSpec` (see `pfld.inference.spec`).
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from pfld.inference.models import INPUT_NAME, OUTPUT_NAME, POSE_NAME, onnx_session
from pfld.inference.spec import check_metadata, decode_metadata, encode_metadata
from pfld.io.atomic import staged
from pfld.models import PFLD

PARITY_BATCH = 4


@dataclass(frozen=True)
class Exported:
    """An exported file and how far onnxruntime is from PyTorch on the check images."""

    path: Path
    landmark_difference: float  # max |onnxruntime - PyTorch|, crop units ([0, 1])
    pose_difference_deg: float | None  # the same for the pose output, degrees; None without it
    check_images: int  # how many images were compared


class LandmarksAndPose(nn.Module):
    """A PFLD with its auxiliary net as one graph: image -> (landmarks (B, K, 2), pose (B, 3) degrees)."""

    def __init__(self, model: PFLD) -> None:
        super().__init__()
        if model.auxiliary is None:
            raise ValueError("with_pose needs the auxiliary pose net: this model has none")
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        landmarks, angles = self.model.forward_with_pose(images)
        return landmarks, angles * (180.0 / math.pi)  # a multiplication: pnnx (ncnn) has no rad2deg


def _import_runtime() -> tuple[ModuleType, ModuleType]:
    """(onnx, onnxruntime), or an ImportError that says how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            f"ONNX export needs onnx, onnxruntime and onnxscript ({error}); "
            'install them with: pip install -e ".[export]"'
        ) from error
    return onnx, onnxruntime


def _torch_export(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int, outputs: list[str]
) -> None:
    """Write `model` to `path` with the dynamo exporter, or the TorchScript one if dynamo fails."""
    # torch's exporter logs that torchvision's detection ops are unavailable, and warns about its own
    # use of a deprecated pytree class: neither concerns a PFLD graph
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        _export_with_fallback(model, example, path, opset, outputs)


def _export_with_fallback(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int, outputs: list[str]
) -> None:
    try:
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=outputs,
            opset_version=opset,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
            verbose=False,
        )
    # Any failure of the dynamo path (export, conversion, optimiser, missing onnxscript) is reported and
    # retried with the TorchScript exporter; if that fails too, its error propagates.
    except Exception as error:  # noqa: BLE001
        print(f"dynamo ONNX export failed ({type(error).__name__}: {error}); retrying with dynamo=False")
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=outputs,
            opset_version=opset,
            dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *outputs]},
        )


def random_images(size: int, batch_size: int = PARITY_BATCH, seed: int = 0, channels: int = 3) -> np.ndarray:
    """(batch_size, channels, size, size) float32 N(0, 1): stand-ins for normalised crops in unit tests."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, channels, size, size, generator=generator).numpy()


def max_abs_difference(model: nn.Module, path: str | Path, images: np.ndarray) -> dict[str, float]:
    """Max |onnxruntime - PyTorch| of each output of the ONNX file at `path` over `images` (N, C, S, S),
    normalised crops: ``landmarks`` in crop units and, for a `LandmarksAndPose`, ``pose`` in degrees.
    `model` is evaluated as given (use eval mode)."""
    _import_runtime()
    session = onnx_session(path)
    names = [output.name for output in session.get_outputs()]
    with torch.no_grad():
        expected = model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
    expected = expected if isinstance(expected, tuple) else (expected,)
    actual = session.run(names, {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})
    if len(actual) != len(expected):
        raise RuntimeError(f"{path}: onnxruntime gives outputs {names}, PyTorch {len(expected)} outputs")
    differences = {}
    for name, ours, theirs in zip(names, actual, expected, strict=True):
        if ours.shape != tuple(theirs.shape):
            raise RuntimeError(
                f"{path}: {name} has shape {ours.shape} in onnxruntime, {tuple(theirs.shape)} in PyTorch"
            )
        differences[name] = float(np.abs(ours - theirs.numpy()).max())
    return differences


def export_onnx(
    model: PFLD,
    path: str | Path,
    metadata: dict[str, Any],
    with_pose: bool = False,
    check_images: np.ndarray | None = None,
    opset: int = 18,
    atol: float = 1e-4,
    pose_atol_deg: float = 1e-2,
) -> Exported:
    """Export `model` to ONNX at `path`, check it against PyTorch, and return the file and the check.

    The graph has input `image` (B, C, S, S) (C: the model's `in_channels`) and output `landmarks`
    (B, K, 2), plus `pose` (B, 3) yaw, pitch, roll in degrees when `with_pose` (which needs the
    auxiliary net; otherwise the net is left out). The batch is dynamic. `metadata` (`ModelSpec.to_metadata`; it must agree with the model)
    is stored as `metadata_props`; read it back with `read_metadata`.

    `check_images` (N, C, S, S) are normalised real crops run through both onnxruntime and PyTorch;
    without them a random batch of 4 is used (for unit tests). Above `atol` (crop units) on the
    landmarks, or `pose_atol_deg` on the pose, the file is removed and a RuntimeError raised.
    `model` itself is not modified (an eval-mode CPU copy is exported).
    """
    onnx, _ = _import_runtime()
    check_metadata(metadata, model.input_size, model.num_points, model.in_channels)
    props = encode_metadata(metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().float().eval()
    network: nn.Module = (LandmarksAndPose(model) if with_pose else model.without_auxiliary()).eval()
    outputs = [OUTPUT_NAME, POSE_NAME] if with_pose else [OUTPUT_NAME]
    size, channels = model.input_size, model.in_channels
    if check_images is None:
        images = random_images(size, channels=channels)
    else:
        images = np.asarray(check_images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (channels, size, size) or not len(images):
        raise ValueError(f"check_images must be (N, {channels}, {size}, {size}), got {images.shape}")
    # batch 2, not 1: the exporter would specialise a batch of 1 to a constant
    example = torch.zeros(2, channels, size, size)
    with staged(path) as building:  # the file appears only once written, described and checked
        _torch_export(network, example, building, opset, outputs)
        proto = onnx.load(str(building))
        for node in proto.graph.node:  # drop the exporter's per-node debug annotations (stack traces)
            del node.metadata_props[:]
        del proto.metadata_props[:]
        for key, value in props.items():
            proto.metadata_props.add(key=key, value=value)
        proto.producer_name = "pfld"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(building))
        differences = max_abs_difference(network, building, images)
        landmark, pose = differences[OUTPUT_NAME], differences.get(POSE_NAME)
        if not landmark <= atol:
            raise RuntimeError(
                f"{path}: onnxruntime's landmarks differ from PyTorch's by {landmark:.3g} (max abs, crop "
                f"units, {len(images)} images) > atol={atol:g}"
            )
        if pose is not None and not pose <= pose_atol_deg:
            raise RuntimeError(
                f"{path}: onnxruntime's pose differs from PyTorch's by {pose:.3g} degrees > {pose_atol_deg:g}"
            )
    return Exported(path, landmark, pose, len(images))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored by `export_onnx`, decoded back to Python values."""
    onnx, _ = _import_runtime()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found")
    proto = onnx.load(str(path), load_external_data=False)
    return decode_metadata({prop.key: prop.value for prop in proto.metadata_props})
