"""Static int8 quantisation (QDQ format) of an exported fp32 PFLD model, for phones.

The int8 graph keeps the fp32 interface: `image` (B, C, S, S) float32 normalised in, `landmarks`
(B, K, 2) float32 in [0, 1] of the crop out; QuantizeLinear / DequantizeLinear pairs sit around the
quantised operators. It carries the fp32 model's metadata plus `pfld.quantization` (JSON: target,
per_channel, method, excluded nodes, number of calibration images).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.calibration import ImageCalibrationReader
from pfld.inference.models import OUTPUT_NAME, onnx_session
from pfld.io.atomic import staged

Target = Literal["arm", "x86"]
Method = Literal["minmax", "entropy", "percentile"]
QUANTIZATION_KEY = "pfld.quantization"

#: (activation type, weight type): onnxruntime recommends signed int8 for both on ARM, and unsigned
#: activations with signed weights on x86 (VNNI's u8 x s8 dot product).
TARGET_TYPES: dict[str, tuple[QuantType, QuantType]] = {
    "arm": (QuantType.QInt8, QuantType.QInt8),
    "x86": (QuantType.QUInt8, QuantType.QInt8),
}
#: Histogram of entropy calibration: onnxruntime's `quantize_static` builds its entropy calibrator with
#: 128 bins and 128 quantised bins and forwards no other values; with equal counts its KL search has a
#: single candidate, the full range, so "entropy" silently equals "minmax" (measured: identical scales).
#: We calibrate with these settings ourselves and hand `quantize_static` the ranges (512 bins: the
#: search's cost grows with the square of the bins; 2048 took 30 s on 32 crops of a 0.25X model).
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 512, 128
METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


#: Names `resolve_keep_float` understands besides node names.
LAYER_ALIASES: tuple[str, ...] = ("first_conv", "last_fc")


def first_and_last_nodes(path: str | Path) -> list[str]:
    """Names of the first Conv (reading the graph input) and of the Gemm / MatMul that regresses the
    landmarks (the last one before the `landmarks` output, not the pose net's) of the ONNX model at
    `path`: the layers most sensitive to int8, often kept in float."""
    graph = onnx.load(str(path), load_external_data=False).graph
    convs = [node for node in graph.node if node.op_type == "Conv"]
    if not convs:
        raise ValueError(f"{path}: no Conv node")
    producers = {out: node for node in graph.node for out in node.output}
    pending, seen = [OUTPUT_NAME], set()
    while pending:  # walk back from the landmarks output to the nearest dense layer
        node = producers.get(pending.pop(0))
        if node is None or node.name in seen:
            continue
        if node.op_type in ("Gemm", "MatMul"):
            return [convs[0].name, node.name]
        seen.add(node.name)
        pending += list(node.input)
    raise ValueError(f"{path}: no Gemm/MatMul node leads to the {OUTPUT_NAME!r} output")


def resolve_keep_float(path: str | Path, names: Sequence[str]) -> list[str]:
    """Node names to keep in float in the model at `path`: ``first_conv`` and ``last_fc`` stand for
    `first_and_last_nodes`; any other entry is a node name, passed through."""
    first, last = first_and_last_nodes(path) if set(names) & set(LAYER_ALIASES) else ("", "")
    aliases = {"first_conv": first, "last_fc": last}
    return list(dict.fromkeys(aliases.get(name, name) for name in names))


def _calibration_reader(
    calibration: Iterable[np.ndarray] | CalibrationDataReader, input_name: str
) -> tuple[CalibrationDataReader, int | None]:
    """(reader, number of images, None if the reader does not say)."""
    if isinstance(calibration, CalibrationDataReader):
        return calibration, getattr(calibration, "count", None)
    reader = ImageCalibrationReader(calibration, input_name)
    return reader, reader.count


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: Iterable[np.ndarray] | CalibrationDataReader,
    target: Target = "arm",
    per_channel: bool = True,
    exclude: Sequence[str] = (),
    method: Method = "minmax",
) -> Path:
    """Quantise the fp32 ONNX model at `fp32_path` to int8 (static, QDQ) at `out_path`; return the path.

    Args:
        calibration: normalised crops, batches (N, C, S, S) or single images (C, S, S) float32 as the
            model's input (see `export.calibration.calibration_batches`), or a ready reader.
        target: "arm" (int8 activations and weights) or "x86" (uint8 activations, int8 weights).
        per_channel: one weight scale per output channel (recommended: depthwise convolutions need it).
        exclude: node names kept in float (e.g. `first_and_last_nodes(fp32_path)`).
        method: how activation ranges are calibrated: "minmax", "entropy" or "percentile".

    The model is first shape-inferred and optimised (`quant_pre_process`) into a temporary file.
    On failure, or a kill, no file is left at `out_path` (it is built beside it, `pfld.io.atomic.staged`).
    """
    if target not in TARGET_TYPES:
        raise ValueError(f"target must be one of {sorted(TARGET_TYPES)}, got {target!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if not fp32_path.is_file():
        raise FileNotFoundError(f"{fp32_path}: fp32 ONNX model not found")
    if out_path.resolve() == fp32_path.resolve():
        raise ValueError(f"{out_path}: the int8 model must not overwrite the fp32 one")
    fp32 = onnx.load(str(fp32_path))
    if len(fp32.graph.input) != 1:
        raise ValueError(f"{fp32_path}: expected one graph input, got {[i.name for i in fp32.graph.input]}")
    reader, count = _calibration_reader(calibration, fp32.graph.input[0].name)
    activation_type, weight_type = TARGET_TYPES[target]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # the int8 file appears only once quantised, described and loaded
    with staged(out_path) as building, tempfile.TemporaryDirectory(prefix="pfld-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        names = {node.name for node in onnx.load(str(prepared)).graph.node}
        unknown = [name for name in exclude if name not in names]
        if unknown:
            raise ValueError(f"{fp32_path}: nodes to exclude {unknown} are not in the (optimised) graph")
        ranges = _entropy_ranges(prepared, reader, Path(tmp)) if method == "entropy" else None
        quantize_static(
            str(prepared),
            str(building),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=activation_type,
            weight_type=weight_type,
            nodes_to_exclude=list(exclude),
            calibrate_method=METHODS[method],
            calibration_cache_path=ranges,
        )
        settings = {
            "target": target,
            "per_channel": per_channel,
            "method": method,
            "excluded": list(exclude),
            "calibration_images": count,
        }
        _write_metadata(building, fp32, settings)
        onnx_session(building)  # loads and runs
    return out_path


def _entropy_ranges(model: Path, reader: CalibrationDataReader, folder: Path) -> Path:
    """Calibrate the activations of `model` by entropy with `ENTROPY_BINS` histogram bins; return the
    ranges as an onnxruntime calibration cache (JSON) in `folder`."""
    calibrator = create_calibrator(
        model,
        augmented_model_path=str(folder / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS},
    )
    calibrator.collect_data(reader)
    cache = folder / "entropy_ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


def _write_metadata(path: Path, fp32: onnx.ModelProto, settings: dict[str, object]) -> None:
    """Replace the metadata of the model at `path` by `fp32`'s plus `pfld.quantization` = `settings`."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for prop in fp32.metadata_props:
        if prop.key != QUANTIZATION_KEY:
            model.metadata_props.add(key=prop.key, value=prop.value)
    model.metadata_props.add(key=QUANTIZATION_KEY, value=json.dumps(settings))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
