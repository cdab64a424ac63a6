"""The runtimes phones use beside onnxruntime: ncnn (through pnnx) and MNN (through its converter).

Each format is written from the same inference network as the ONNX file (the landmark net, plus the pose
output with ``with_pose=true``), run with
the runtime's own Python binding on the same real crops, and only kept when its fp32 output matches
PyTorch's (`check_parity`). Each file gets a JSON sidecar with what an app needs to feed it and read
it (`sidecar`): input size, mean and std, crop scale, scheme, points, blob names and layouts.

    ncnn  model.ncnn.param + model.ncnn.bin   fp32 (pnnx traces the PyTorch net; `pip install ".[ncnn]"`)
          model_int8.ncnn.param + .bin        int8 weights and activations, made here as ncnn2table +
                                              ncnn2int8 make it, on the same calibration crops
    mnn   model.mnn                           fp32, from the checked ONNX file (`pip install ".[mnn]"`)
          model_wq8.mnn                       8-bit weights, float activations (MNN's weight quantisation)
    tflite model.tflite                       fp32 (litert-torch converts the PyTorch net; `pip install ".[litert]"`)
          model_int8.tflite                   full integer: int8 weights (per channel) and activations
                                              calibrated on the same real crops as the ONNX int8 file, int8
                                              input and output with the scale and zero point in the sidecar

Not here yet: MNN full int8: the MNN 3.6.1 wheel's quantiser (`mnnquant src.mnn dst.mnn config.json`, also as
`_tools.mnnquant`) aborts with ``std::length_error`` on our fp32 file, with KL or EMA calibration on a
folder of 112 px PNG crops, and also on a file converted from a batch-1 ONNX model (2026-12-03).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export.latency import latency_summary, time_calls
from pfld.io.atomic import atomic_write_text, staged

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


def export_ncnn(
    network: nn.Module, size: int, folder: Path, threads: int = 1, channels: int = 3, with_pose: bool = False
) -> Written:
    """Trace ``network`` (eval mode; ``channels`` inputs: 3 RGB or 1 grey; the landmark net, or with
    ``with_pose`` a `LandmarksAndPose`) with pnnx into ``model.ncnn.param`` / ``.bin``."""
    require("ncnn")
    import pnnx

    param, weights = folder / "model.ncnn.param", folder / "model.ncnn.bin"
    example = torch.zeros(1, channels, size, size)
    with tempfile.TemporaryDirectory(prefix="pfld-pnnx-") as work:
        work_dir = Path(work)
        try:
            pnnx.export(  # prints the converted graph
                network,
                str(work_dir / "model.pt"),
                (example,),
                fp16=False,
                ncnnparam=str(work_dir / "model.ncnn.param"),
                ncnnbin=str(work_dir / "model.ncnn.bin"),
            )
        except Exception as error:  # pnnx fails in many ways (even a SyntaxError from its generated code)
            raise RuntimeError(
                f"pnnx could not convert the network: {type(error).__name__}: {error}"
            ) from error
        for built, final in ((work_dir / "model.ncnn.param", param), (work_dir / "model.ncnn.bin", weights)):
            if not built.is_file():
                raise RuntimeError(f"pnnx wrote no {built.name}; see its output above")
            with staged(final) as temporary:
                shutil.copyfile(built, temporary)
    run = ncnn_runner(param, weights, threads, with_pose)
    return Written("ncnn_fp32", "ncnn fp32", [param, weights], _batched(run), run, with_pose=with_pose)


def ncnn_runner(param: Path, weights: Path, threads: int = 1, with_pose: bool = False) -> Runner:
    """An ncnn net as a function of one (1, C, S, S) float32 image (see `Runner`)."""
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = net.opt.use_fp16_packed = False
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise RuntimeError(f"{param}: ncnn could not load the model")

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        extractor = net.create_extractor()
        extractor.input(NCNN_INPUT, ncnn.Mat(np.ascontiguousarray(image[0], dtype=np.float32)).clone())
        outputs = []
        for blob in (NCNN_OUTPUT, NCNN_POSE) if with_pose else (NCNN_OUTPUT,):
            status, out = extractor.extract(blob)
            if status != 0:
                raise RuntimeError(f"{param}: ncnn failed to run the model (status {status})")
            outputs.append(np.array(out, dtype=np.float32))
        return outputs[0], (outputs[1].reshape(3) if with_pose else None)

    return run


#: ncnn layers with weights: their params' keys for (num_output, bias_term, weight_data_size), and the
#: ``int8_scale_term`` ncnn2int8 gives them (1: one weight scale per group, 2: per output channel).
NCNN_WEIGHTED: dict[str, tuple[tuple[str, str, str], str]] = {
    "Convolution": (("0", "5", "6"), "2"),
    "ConvolutionDepthWise": (("0", "5", "6"), "1"),
    "InnerProduct": (("0", "1", "2"), "2"),
}
#: The tags before a weight array in an ncnn .bin (ModelBin): raw float32, int8.
NCNN_FP32_TAG, NCNN_INT8_TAG = 0, 0x000D4B38
#: Layers that read weights from the .bin but that `export_ncnn_int8` does not know how to walk past.
_NCNN_OTHER_WEIGHTED = {"BatchNorm", "Bias", "Scale", "MemoryData", "Deconvolution", "DeconvolutionDepthWise",
                        "PReLU", "Embed", "LayerNorm", "GroupNorm", "InstanceNorm", "Gemm", "MultiHeadAttention"}  # fmt: skip


@dataclass
class NcnnLayer:
    """One line of an ncnn .param file."""

    kind: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[str, str]

    @classmethod
    def parse(cls, line: str) -> NcnnLayer:
        parts = line.split()
        kind, name, inputs, outputs = parts[0], parts[1], int(parts[2]), int(parts[3])
        bottoms, tops = parts[4 : 4 + inputs], parts[4 + inputs : 4 + inputs + outputs]
        params = dict(item.split("=", 1) for item in parts[4 + inputs + outputs :])
        return cls(kind, name, bottoms, tops, params)

    def line(self) -> str:
        blobs = " ".join([*self.bottoms, *self.tops])
        params = " ".join(f"{key}={value}" for key, value in self.params.items())
        return (
            f"{self.kind:<24} {self.name:<24} {len(self.bottoms)} {len(self.tops)} {blobs} {params}".rstrip()
        )


def export_ncnn_int8(
    fp32: Written, folder: Path, calibration: Iterable[np.ndarray], method: str = "minmax", threads: int = 1
) -> Written:
    """ncnn int8 (``model_int8.ncnn.param`` / ``.bin``) from the fp32 files, as ncnn's own ncnn2table +
    ncnn2int8 would make it (those tools are not in the PyPI wheels): int8 weights with one scale per
    output channel (per group for depthwise), and each quantised layer's input scale from its range over
    the calibration crops ((B, C, S, S) normalised batches), run through the fp32 net: the largest
    |value| (``method`` "minmax") or its 99.999th percentile ("percentile"; "entropy" falls back to it).
    Biases stay float; every other layer is unchanged."""
    require("ncnn")
    param, weights = fp32.files
    header, *lines = param.read_text().splitlines()
    layers = [NcnnLayer.parse(line) for line in lines[1:] if line.strip()]
    unknown = sorted({layer.kind for layer in layers} & _NCNN_OTHER_WEIGHTED)
    if unknown:
        raise ValueError(f"{param}: ncnn int8 does not know the weights of layers {unknown}")
    images = [image for batch in calibration for image in np.asarray(batch, dtype=np.float32)]
    if not images:
        raise ValueError("ncnn int8: no calibration crops")
    quantile = 100.0 if method == "minmax" else 99.999
    blobs = sorted({layer.bottoms[0] for layer in layers if layer.kind in NCNN_WEIGHTED})
    ranges = _ncnn_ranges(param, weights, images, blobs, quantile, threads)
    data, offset, out = weights.read_bytes(), 0, bytearray()
    for layer in layers:
        if layer.kind not in NCNN_WEIGHTED:
            continue
        (outputs_key, bias_key, size_key), scale_term = NCNN_WEIGHTED[layer.kind]
        outputs, size = int(layer.params[outputs_key]), int(layer.params[size_key])
        bias = int(layer.params.get(bias_key, "0"))
        (tag,) = struct.unpack_from("<I", data, offset)
        if tag != NCNN_FP32_TAG:
            raise ValueError(f"{weights}: layer {layer.name}'s weights are not raw float32 (tag {tag:#x})")
        weight = np.frombuffer(data, np.float32, size, offset + 4)
        offset += 4 + 4 * size + 4 * outputs * bias
        groups = int(layer.params.get("7", "1")) if layer.kind == "ConvolutionDepthWise" else outputs
        rows = weight.reshape(groups, -1)
        weight_scales = (127.0 / np.maximum(np.abs(rows).max(axis=1), 1e-12)).astype(np.float32)
        quantised = np.clip(np.round(rows * weight_scales[:, None]), -127, 127).astype(np.int8).tobytes()
        out += struct.pack("<I", NCNN_INT8_TAG) + quantised + bytes(-len(quantised) % 4)
        out += data[offset - 4 * outputs * bias : offset]  # the bias, float32
        out += weight_scales.tobytes()
        out += np.float32(127.0 / max(ranges[layer.bottoms[0]], 1e-12)).tobytes()  # the input's scale
        layer.params["8"] = scale_term
    if offset != len(data):
        raise ValueError(f"{weights}: {len(data) - offset} bytes left after the last weighted layer")
    int8_param, int8_weights = folder / "model_int8.ncnn.param", folder / "model_int8.ncnn.bin"
    with staged(int8_param) as temporary:
        temporary.write_text("\n".join([header, lines[0], *(layer.line() for layer in layers)]) + "\n")
    with staged(int8_weights) as temporary:
        temporary.write_bytes(bytes(out))
    run = ncnn_runner(int8_param, int8_weights, threads, fp32.with_pose)
    details = {
        "weight_bits": 8,
        "activation_bits": 8,
        "calibration_images": len(images),
        "method": "minmax" if method == "minmax" else "percentile",
    }
    files = [int8_param, int8_weights]
    return Written("ncnn_int8", "ncnn int8", files, _batched(run), run, details, with_pose=fp32.with_pose)


def _ncnn_ranges(
    param: Path, weights: Path, images: list[np.ndarray], blobs: list[str], quantile: float, threads: int
) -> dict[str, float]:
    """Each blob's ``quantile`` of |value| over ``images`` in the fp32 net (100: the largest), from a
    2048-bin histogram per blob between 0 and its largest |value| (two passes)."""
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.lightmode = False  # keep the intermediate blobs for extraction
    net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = net.opt.use_fp16_packed = False
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise RuntimeError(f"{param}: ncnn could not load the model")

    def activations(image: np.ndarray) -> dict[str, np.ndarray]:
        extractor = net.create_extractor()
        extractor.input(NCNN_INPUT, ncnn.Mat(np.ascontiguousarray(image)).clone())
        found = {}
        for blob in blobs:
            if blob == NCNN_INPUT:
                found[blob] = np.abs(image)
                continue
            status, mat = extractor.extract(blob)
            if status != 0:
                raise RuntimeError(f"{param}: ncnn could not compute blob {blob} (status {status})")
            found[blob] = np.abs(np.array(mat, copy=True))
        return found

    peaks = dict.fromkeys(blobs, 0.0)
    for image in images:
        for blob, values in activations(image).items():
            peaks[blob] = max(peaks[blob], float(values.max()))
    if quantile >= 100.0:
        return peaks
    bins = 2048
    counts = {blob: np.zeros(bins, dtype=np.int64) for blob in blobs}
    for image in images:
        for blob, values in activations(image).items():
            counts[blob] += np.histogram(values, bins=bins, range=(0.0, max(peaks[blob], 1e-12)))[0]
    ranges = {}
    for blob in blobs:
        cumulative = np.cumsum(counts[blob]) / max(counts[blob].sum(), 1)
        edge = int(np.searchsorted(cumulative, quantile / 100.0)) + 1
        ranges[blob] = max(peaks[blob], 1e-12) * min(edge, bins) / bins
    return ranges


def export_mnn(
    onnx_path: Path, folder: Path, weight_bits: int | None = None, threads: int = 1, with_pose: bool = False
) -> Written:
    """Convert the checked ONNX file with MNN's converter: fp32, or 8-bit weights with ``weight_bits=8``;
    ``with_pose``: the file has the ``pose`` output (degrees) beside ``landmarks``."""
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
    run = mnn_runner(path, threads, with_pose)
    key = "mnn_fp32" if weight_bits is None else f"mnn_wq{weight_bits}"
    label = "MNN fp32" if weight_bits is None else f"MNN {weight_bits}-bit weights"
    details = {} if weight_bits is None else {"weight_bits": weight_bits}
    return Written(key, label, [path], _batched(run), run, details, with_pose=with_pose)


def _mnnconvert() -> str:
    """The ``mnnconvert`` of this environment (beside its Python), else the one on PATH."""
    local = Path(sys.executable).with_name("mnnconvert")
    found = str(local) if local.is_file() else shutil.which("mnnconvert")
    if found is None:
        raise MissingRuntime("format 'mnn' needs MNN's converter (mnnconvert): pip install -e '.[mnn]'")
    return found


def mnn_runner(path: Path, threads: int = 1, with_pose: bool = False) -> Runner:
    """An MNN interpreter session as a function of one (1, C, S, S) float32 image (see `Runner`)."""
    import MNN

    interpreter = MNN.Interpreter(str(path))
    session = interpreter.createSession({"numThread": threads})
    source = interpreter.getSessionInput(session)
    shape = tuple(source.getShape())

    def output(name: str) -> np.ndarray:
        tensor = interpreter.getSessionOutput(session, name)
        out_shape = tuple(tensor.getShape())
        host = MNN.Tensor(
            out_shape, MNN.Halide_Type_Float, np.zeros(out_shape, np.float32), MNN.Tensor_DimensionType_Caffe
        )
        tensor.copyToHostTensor(host)
        return np.array(host.getData(), dtype=np.float32)

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        staged_input = MNN.Tensor(
            shape,
            MNN.Halide_Type_Float,
            np.ascontiguousarray(image, dtype=np.float32),
            MNN.Tensor_DimensionType_Caffe,
        )
        source.copyFrom(staged_input)
        interpreter.runSession(session)
        return output("landmarks").reshape(-1, 2), (output("pose").reshape(3) if with_pose else None)

    return run


def export_tflite(
    network: nn.Module,
    size: int,
    folder: Path,
    threads: int = 1,
    channels: int = 3,
    calibration: Iterable[np.ndarray] | None = None,
    with_pose: bool = False,
) -> Written:
    """Convert ``network`` (eval mode: the landmark net, or with ``with_pose`` a `LandmarksAndPose`)
    with litert-torch into ``model.tflite``, or with
    ``calibration`` ((B, C, S, S) normalised crop batches) into the full-integer ``model_int8.tflite``:
    PyTorch's PT2E quantisation (symmetric, per-channel weights), its observers run on every crop."""
    require("tflite")
    import litert_torch

    # channels-last input, as Android's bitmaps and LiteRT's image pipelines hand it over
    network = litert_torch.to_channel_last_io(network, args=[0]).eval()
    example = (torch.zeros(1, size, size, channels),)
    quant_config, details = None, {}
    if calibration is not None:
        from litert_torch.quantize import pt2e_quantizer
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import quantize_pt2e

        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
        )
        graph = quantize_pt2e.prepare_pt2e(torch.export.export(network, example).module(), quantizer)
        count = 0
        with torch.no_grad():
            for batch in calibration:
                for image in torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)):
                    graph(image.permute(1, 2, 0)[None])  # NHWC, and the exported graph has batch 1
                    count += 1
        if not count:
            raise ValueError("tflite int8: no calibration crops")
        network = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
        quant_config = QuantConfig(pt2e_quantizer=quantizer)
        details = {"weight_bits": 8, "activation_bits": 8, "calibration_images": count}
    path = folder / ("model.tflite" if calibration is None else "model_int8.tflite")
    with staged(path) as temporary:
        try:
            litert_torch.convert(network, example, quant_config=quant_config).export(str(temporary))
        except Exception as error:  # an op litert-torch cannot lower, among others
            raise RuntimeError(
                f"litert-torch could not convert the network: {type(error).__name__}: {error}"
            ) from error
    run, described = tflite_runner(path, threads)
    details |= described
    key, label = ("tflite_fp32", "LiteRT fp32") if calibration is None else ("tflite_int8", "LiteRT int8")
    return Written(key, label, [path], _batched(run), run, details, with_pose="pose_output" in described)


def tflite_runner(path: Path, threads: int = 1) -> tuple[Runner, dict[str, Any]]:
    """A LiteRT interpreter (its input channels-last) as a function of one (1, C, S, S) float32 image
    (see `Runner`), and a description of its tensors: the input's and outputs' names (the landmarks'
    output is the 3-D one, a pose output the 2-D one) and, where int8, their ``[scale, zero_point]``: an
    int8 input is ``round(x / scale) + zero_point`` of the normalised crop, an int8 output
    ``(q - zero_point) * scale``."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    outputs = interpreter.get_output_details()
    landmarks = next(d for d in outputs if len(d["shape"]) == 3)
    pose = next((d for d in outputs if len(d["shape"]) == 2), None)
    tensors = {"input": source, "output": landmarks} | ({"pose_output": pose} if pose is not None else {})
    described = {name: detail["name"] for name, detail in tensors.items()} | {
        f"{name.removesuffix('_output')}_quantization": [
            float(d["quantization"][0]),
            int(d["quantization"][1]),
        ]
        for name, d in tensors.items()
        if d["dtype"] == np.int8
    }

    def read(detail: dict[str, Any]) -> np.ndarray:
        out = interpreter.get_tensor(detail["index"])
        if detail["dtype"] == np.int8:
            scale, zero = detail["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return np.asarray(out, dtype=np.float32)

    def run(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        data = np.ascontiguousarray(np.transpose(image, (0, 2, 3, 1)), dtype=np.float32)
        if source["dtype"] == np.int8:
            scale, zero = source["quantization"]
            data = np.clip(np.round(data / scale) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(source["index"], data)
        interpreter.invoke()
        return read(landmarks).reshape(-1, 2), (None if pose is None else read(pose).reshape(3))

    return run, described


def _batched(run: Runner) -> BatchPredictor:
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


__all__ = [
    "FORMATS",
    "MissingRuntime",
    "Written",
    "check_formats",
    "check_parity",
    "export_mnn",
    "export_ncnn",
    "export_ncnn_int8",
    "export_tflite",
    "remove",
    "require",
    "runtime_latency",
    "sidecar",
    "tflite_runner",
]
