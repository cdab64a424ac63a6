"""What every runtime format shares: the format names and their packages, the `Written` record of a
file and the predictor that runs it, the parity check against PyTorch, latency and the JSON sidecar."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export.latency import latency_summary, time_calls
from pfld.io.atomic import atomic_write_text

#: The formats `python -m export formats=[...]` knows; onnx is the one always written.
FORMATS: tuple[str, ...] = ("onnx", "ncnn", "mnn", "tflite")
#: Python modules each format needs, and the extra that installs them.
REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "ncnn": (("ncnn", "pnnx"), "ncnn"),
    "mnn": (("MNN",), "mnn"),
    "tflite": (("litert_torch", "ai_edge_litert"), "litert"),
}
#: ncnn's blob names as pnnx writes them (the pose, when exported, is the second output).
NCNN_INPUT, NCNN_OUTPUT, NCNN_POSE = "in0", "out0", "out1"
#: The sidecar's description of the pose output (ONNX's and every runtime's: degrees, as in files).
POSE_LAYOUT = "3 float32: yaw, pitch, roll in degrees"
#: The sidecar's input layout by `pfld.channels` (3 when absent).
INPUT_LAYOUTS = {
    3: "1 x 3 x S x S float32, RGB, (pixel / 255 - mean) / std, the policy crop",
    1: "1 x 1 x S x S float32, grey = 0.299 R + 0.587 G + 0.114 B, (grey / 255 - mean) / std, the policy crop",
}

#: A batch predictor, called as a `pfld.inference.LandmarkModel` is: (B, C, S, S) normalised crops ->
#: ((B, K, 2) landmarks in [0, 1] of the crop, (B, 3) yaw, pitch, roll in radians or None without pose).
BatchPredictor = Callable[[np.ndarray | torch.Tensor], tuple[np.ndarray, np.ndarray | None]]
#: One image's runner: (1, C, S, S) float32 -> ((K, 2) landmarks, (3,) pose in degrees or None).
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


class MissingRuntime(RuntimeError):
    """A format whose Python packages are not installed."""


def check_formats(formats: list[str]) -> list[str]:
    """The requested formats, checked: known names, onnx first and always (the others are scored like it)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"formats {unknown} are unknown; choose from {list(FORMATS)}")
    return ["onnx", *[f for f in dict.fromkeys(formats) if f != "onnx"]]


def require(fmt: str) -> None:
    """Raise `MissingRuntime` with the install command when ``fmt``'s packages are missing."""
    modules, extra = REQUIREMENTS[fmt]
    missing = []
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingRuntime(
            f"format {fmt!r} needs the Python packages {missing}: pip install -e '.[{extra}]' "
            f"(or pip install {' '.join(m.lower() for m in missing)}); the other formats are written"
        )


@dataclass
class Written:
    """A model written in one format and precision: its files and a predictor that runs it."""

    key: str  # the report's key, e.g. "ncnn_fp32"
    label: str  # e.g. "ncnn fp32"
    files: list[Path]
    predictor: BatchPredictor
    single: Callable[[np.ndarray], Any]  # one (1, C, S, S) image, for the latency
    details: dict[str, Any] = field(default_factory=dict)
    with_pose: bool = False  # the file also gives yaw, pitch, roll

    @property
    def quantized(self) -> bool:
        """Whether the file stores 8-bit weights (its parity is reported, and it goes through the gate)."""
        return bool(self.details.get("weight_bits"))


def batched(run: Runner) -> BatchPredictor:
    """A one-image runner as a predictor of batches (`BatchPredictor`; the pose in radians, as in Python)."""

    def predict(images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        # a C-contiguous float32 copy first: the loaders' channels-last batches, sliced per image, gave
        # ncnn garbage even through np.ascontiguousarray of each slice
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().contiguous().numpy()
        batch = np.ascontiguousarray(images, dtype=np.float32)
        results = [run(batch[i : i + 1]) for i in range(len(batch))]
        landmarks = np.stack([r[0] for r in results])
        if results[0][1] is None:
            return landmarks, None
        return landmarks, np.deg2rad(np.stack([r[1] for r in results]))

    return predict


def check_parity(
    written: Written, network: nn.Module, images: np.ndarray, atol: float, pose_atol_deg: float = 1e-2
) -> dict[str, float]:
    """Max and mean |runtime - PyTorch| of the landmarks on ``images`` (crop units), and of the pose
    (degrees) when the file gives it (``network`` then a `LandmarksAndPose`). Raises when a max exceeds
    ``atol`` / ``pose_atol_deg`` (for an fp32 model; the caller removes the files)."""
    with torch.no_grad():
        expected = network(torch.from_numpy(images))
    landmarks, pose = expected if isinstance(expected, tuple) else (expected, None)
    got, got_pose = written.predictor(images)
    difference = np.abs(got - landmarks.numpy())
    result = {"max_abs": float(difference.max()), "mean_abs": float(difference.mean()), "images": len(images)}
    if written.with_pose:
        if pose is None or got_pose is None:
            raise RuntimeError(f"{written.label}: the file or the PyTorch net has no pose output")
        pose_difference = np.abs(np.rad2deg(got_pose) - pose.numpy())
        result |= {
            "pose_max_abs_deg": float(pose_difference.max()),
            "pose_mean_abs_deg": float(pose_difference.mean()),
        }
    if written.quantized:
        return result
    if not result["max_abs"] <= atol:
        raise RuntimeError(
            f"{written.label}: landmarks differ from PyTorch's by {result['max_abs']:.3g} (max abs, crop units, "
            f"{len(images)} images) > atol={atol:g}; the files are not kept"
        )
    if written.with_pose and not result["pose_max_abs_deg"] <= pose_atol_deg:
        raise RuntimeError(
            f"{written.label}: the pose differs from PyTorch's by {result['pose_max_abs_deg']:.3g} degrees "
            f"(max abs, {len(images)} images) > {pose_atol_deg:g}; the files are not kept"
        )
    return result


def runtime_latency(
    run: Callable[[np.ndarray], Any], image: np.ndarray, runs: int, warmup: int
) -> dict[str, Any]:
    """Milliseconds per call of a one-image runner (its own thread setting) on ``image`` (1, C, S, S)."""
    times = time_calls(lambda: run(image), runs, warmup)
    return {"threads": 1, **latency_summary(times), "runs": runs, "warmup": warmup}


def sidecar(written: Written, metadata: dict[str, Any]) -> Path:
    """``<first file>.json``: the model's self-description, for formats that cannot carry metadata."""
    fmt = written.key.split("_")[0]
    layout = {
        "input": NCNN_INPUT if fmt == "ncnn" else "image",
        "input_layout": INPUT_LAYOUTS[metadata.get("pfld.channels", 3)],
        "output": NCNN_OUTPUT if fmt == "ncnn" else "landmarks",
        "output_layout": "K x 2 float32: x, y in [0, 1] of the crop (pixel = value * S - 0.5)",
    }
    if written.with_pose:
        layout |= {"pose_output": NCNN_POSE if fmt == "ncnn" else "pose", "pose_layout": POSE_LAYOUT}
    if fmt == "tflite":
        channels = metadata.get("pfld.channels", 3)
        layout["input_layout"] = layout["input_layout"].replace(
            f"1 x {channels} x S x S", f"1 x S x S x {channels} (NHWC)"
        )
    if "input_quantization" in written.details:
        layout["input_layout"] += "; then int8: round(x / scale) + zero_point (input_quantization)"
        layout["output_layout"] = "K x 2 int8: (q - zero_point) * scale (output_quantization) gives " + (
            layout["output_layout"].removeprefix("K x 2 float32: ")
        )
    if "pose_quantization" in written.details:
        layout["pose_layout"] = "3 int8: (q - zero_point) * scale (pose_quantization) gives " + (
            POSE_LAYOUT.removeprefix("3 float32: ")
        )
    path = written.files[0].with_suffix(written.files[0].suffix + ".json")
    atomic_write_text(path, json.dumps({**metadata, **layout, **written.details}, indent=2) + "\n")
    return path


def remove(written_files: list[Path]) -> None:
    for path in written_files:
        path.unlink(missing_ok=True)
        path.with_suffix(path.suffix + ".json").unlink(missing_ok=True)
