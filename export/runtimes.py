"""The runtimes phones use beside onnxruntime: ncnn (through pnnx) and MNN (through its converter).

Each format is written from the same inference network as the ONNX file (the landmark net), run with
the runtime's own Python binding on the same real crops, and only kept when its fp32 output matches
PyTorch's (`check_parity`). Each file gets a JSON sidecar with what an app needs to feed it and read
it (`sidecar`): input size, mean and std, crop scale, scheme, points, blob names and layouts.

    ncnn  model.ncnn.param + model.ncnn.bin   fp32 (pnnx traces the PyTorch net; `pip install ".[ncnn]"`)
    mnn   model.mnn                           fp32, from the checked ONNX file (`pip install ".[mnn]"`)
          model_wq8.mnn                       8-bit weights, float activations (MNN's weight quantisation)

Not here yet: ncnn int8 (its calibration tools, ncnn2table / ncnn2int8, are not in the PyPI wheels),
MNN full int8 (`mnnquant` with a calibration folder), and LiteRT.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export.latency import latency_summary, time_calls
from pfld.io.atomic import atomic_write_text, staged

#: The formats `python -m export formats=[...]` knows; onnx is the one always written.
FORMATS: tuple[str, ...] = ("onnx", "ncnn", "mnn")
#: Python modules each format needs, and the extra that installs them.
REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "ncnn": (("ncnn", "pnnx"), "ncnn"),
    "mnn": (("MNN",), "mnn"),
}
#: ncnn's blob names as pnnx writes them.
NCNN_INPUT, NCNN_OUTPUT = "in0", "out0"
#: The sidecar's input layout by `pfld.channels` (3 when absent).
INPUT_LAYOUTS = {
    3: "1 x 3 x S x S float32, RGB, (pixel / 255 - mean) / std, the policy crop",
    1: "1 x 1 x S x S float32, grey = 0.299 R + 0.587 G + 0.114 B, (grey / 255 - mean) / std, the policy crop",
}

#: A batch predictor, called as a `pfld.inference.LandmarkModel` is: (B, C, S, S) normalised crops ->
#: ((B, K, 2) landmarks in [0, 1] of the crop, None: these files carry no pose output).
BatchPredictor = Callable[[np.ndarray | torch.Tensor], tuple[np.ndarray, None]]


class MissingRuntime(RuntimeError):
    """A format whose Python packages are not installed."""


def check_formats(formats: list[str]) -> list[str]:
    """The requested formats, checked: known names, onnx first and always (the others are scored like it)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"formats {unknown} are unknown; choose from {list(FORMATS)} (tflite: not yet)")
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


def export_ncnn(network: nn.Module, size: int, folder: Path, threads: int = 1, channels: int = 3) -> Written:
    """Trace ``network`` (the landmark net, eval mode; ``channels`` inputs: 3 RGB or 1 grey) with pnnx
    into ``model.ncnn.param`` / ``.bin``."""
    require("ncnn")
    import pnnx

    param, weights = folder / "model.ncnn.param", folder / "model.ncnn.bin"
    example = torch.zeros(1, channels, size, size)
    with tempfile.TemporaryDirectory(prefix="pfld-pnnx-") as work:
        work_dir = Path(work)
        pnnx.export(  # prints the converted graph
            network,
            str(work_dir / "model.pt"),
            (example,),
            fp16=False,
            ncnnparam=str(work_dir / "model.ncnn.param"),
            ncnnbin=str(work_dir / "model.ncnn.bin"),
        )
        for built, final in ((work_dir / "model.ncnn.param", param), (work_dir / "model.ncnn.bin", weights)):
            if not built.is_file():
                raise RuntimeError(f"pnnx wrote no {built.name}; see its output above")
            with staged(final) as temporary:
                shutil.copyfile(built, temporary)
    run = ncnn_runner(param, weights, threads)
    return Written("ncnn_fp32", "ncnn fp32", [param, weights], _batched(run), run)


def ncnn_runner(param: Path, weights: Path, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """An ncnn net as a function of one (1, C, S, S) float32 image -> (K, 2)."""
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = net.opt.use_fp16_packed = False
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise RuntimeError(f"{param}: ncnn could not load the model")

    def run(image: np.ndarray) -> np.ndarray:
        extractor = net.create_extractor()
        extractor.input(NCNN_INPUT, ncnn.Mat(np.ascontiguousarray(image[0], dtype=np.float32)).clone())
        status, out = extractor.extract(NCNN_OUTPUT)
        if status != 0:
            raise RuntimeError(f"{param}: ncnn failed to run the model (status {status})")
        return np.array(out)

    return run


def export_mnn(onnx_path: Path, folder: Path, weight_bits: int | None = None, threads: int = 1) -> Written:
    """Convert the checked ONNX file with MNN's converter: fp32, or 8-bit weights with ``weight_bits=8``."""
    require("mnn")
    name = "model.mnn" if weight_bits is None else f"model_wq{weight_bits}.mnn"
    path = folder / name
    with staged(path) as temporary:
        command = [
            _mnnconvert(),
            "-f",
            "ONNX",
            "--modelFile",
            str(onnx_path),
            "--MNNModel",
            str(temporary),
            "--bizCode",
            "pfld",
        ]
        if weight_bits is not None:
            command += ["--weightQuantBits", str(weight_bits)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not temporary.is_file() or not temporary.stat().st_size:
            raise RuntimeError(f"MNN's converter failed on {onnx_path}: {(done.stdout + done.stderr)[-800:]}")
    run = mnn_runner(path, threads)
    key = "mnn_fp32" if weight_bits is None else f"mnn_wq{weight_bits}"
    label = "MNN fp32" if weight_bits is None else f"MNN {weight_bits}-bit weights"
    details = {} if weight_bits is None else {"weight_bits": weight_bits}
    return Written(key, label, [path], _batched(run), run, details)


def _mnnconvert() -> str:
    """The ``mnnconvert`` of this environment (beside its Python), else the one on PATH."""
    local = Path(sys.executable).with_name("mnnconvert")
    found = str(local) if local.is_file() else shutil.which("mnnconvert")
    if found is None:
        raise MissingRuntime("format 'mnn' needs MNN's converter (mnnconvert): pip install -e '.[mnn]'")
    return found


def mnn_runner(path: Path, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """An MNN interpreter session as a function of one (1, C, S, S) float32 image -> (K, 2)."""
    import MNN

    interpreter = MNN.Interpreter(str(path))
    session = interpreter.createSession({"numThread": threads})
    source = interpreter.getSessionInput(session)
    shape = tuple(source.getShape())

    def run(image: np.ndarray) -> np.ndarray:
        staged_input = MNN.Tensor(
            shape,
            MNN.Halide_Type_Float,
            np.ascontiguousarray(image, dtype=np.float32),
            MNN.Tensor_DimensionType_Caffe,
        )
        source.copyFrom(staged_input)
        interpreter.runSession(session)
        output = interpreter.getSessionOutput(session, "landmarks")
        out_shape = tuple(output.getShape())
        host = MNN.Tensor(
            out_shape, MNN.Halide_Type_Float, np.zeros(out_shape, np.float32), MNN.Tensor_DimensionType_Caffe
        )
        output.copyToHostTensor(host)
        return np.array(host.getData(), dtype=np.float32).reshape(out_shape[-2:])

    return run


def _batched(run: Callable[[np.ndarray], np.ndarray]) -> BatchPredictor:
    """A one-image runner as a predictor of batches (`BatchPredictor`)."""

    def predict(images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, None]:
        # a C-contiguous float32 copy first: the loaders' channels-last batches, sliced per image, gave
        # ncnn garbage even through np.ascontiguousarray of each slice
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().contiguous().numpy()
        batch = np.ascontiguousarray(images, dtype=np.float32)
        return np.stack([run(batch[i : i + 1]) for i in range(len(batch))]), None

    return predict


def check_parity(written: Written, network: nn.Module, images: np.ndarray, atol: float) -> dict[str, float]:
    """Max and mean |runtime - PyTorch| of the landmarks on ``images`` (crop units). Raises when the max
    exceeds ``atol`` (for an fp32 model; the caller removes the files)."""
    with torch.no_grad():
        expected = network(torch.from_numpy(images)).numpy()
    got, _ = written.predictor(images)
    difference = np.abs(got - expected)
    result = {"max_abs": float(difference.max()), "mean_abs": float(difference.mean()), "images": len(images)}
    if not written.details.get("weight_bits") and not result["max_abs"] <= atol:
        raise RuntimeError(
            f"{written.label}: landmarks differ from PyTorch's by {result['max_abs']:.3g} (max abs, crop units, "
            f"{len(images)} images) > atol={atol:g}; the files are not kept"
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
    path = written.files[0].with_suffix(written.files[0].suffix + ".json")
    atomic_write_text(path, json.dumps({**metadata, **layout, **written.details}, indent=2) + "\n")
    return path


def remove(written_files: list[Path]) -> None:
    for path in written_files:
        path.unlink(missing_ok=True)
        path.with_suffix(path.suffix + ".json").unlink(missing_ok=True)


__all__ = [
    "FORMATS",
    "MissingRuntime",
    "Written",
    "check_formats",
    "check_parity",
    "export_mnn",
    "export_ncnn",
    "remove",
    "require",
    "runtime_latency",
    "sidecar",
]
