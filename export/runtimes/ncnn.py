"""ncnn: fp32 through pnnx, and int8 made here as ncnn's ncnn2table + ncnn2int8 would make it."""

from __future__ import annotations

import shutil
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.runtimes.common import NCNN_INPUT, NCNN_OUTPUT, NCNN_POSE, Runner, Written, batched, require
from pfld.io.atomic import staged


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
    return Written("ncnn_fp32", "ncnn fp32", [param, weights], batched(run), run, with_pose=with_pose)


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
    return Written("ncnn_int8", "ncnn int8", files, batched(run), run, details, with_pose=fp32.with_pose)


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
