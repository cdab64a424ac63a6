"""ONNX export of a PFLD landmark model, self-describing (metadata) and checked against PyTorch.

The exported graph maps `image` (B, 3, S, S), float32, normalised with the stored mean and std, to
`landmarks` (B, K, 2), x then y, in [0, 1] of the crop; B is dynamic, S and K are fixed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from pfld.inference import load_inference_model
from pfld.models import PFLD

INPUT_NAME = "image"
OUTPUT_NAME = "landmarks"
# What a deployed model must carry to be used without its training config.
METADATA_KEYS = (
    "input_size",
    "crop_scale",
    "mean",
    "std",
    "scheme",
    "num_points",
    "normalization",
    "coordinates",
)
PARITY_BATCH = 4


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


def encode_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """ONNX `metadata_props` values: strings as they are, anything else (and strings that would
    parse as JSON, such as "42") JSON-encoded, so that `decode_metadata` inverts it exactly."""
    encoded = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata keys must be strings, got {key!r}")
        if isinstance(value, str) and not _parses_as_json(value):
            encoded[key] = value
            continue
        try:
            encoded[key] = json.dumps(value)
        except TypeError as error:
            raise ValueError(f"metadata {key!r} is not JSON-serialisable: {value!r}") from error
    return encoded


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """Inverse of `encode_metadata` (tuples come back as lists)."""
    return {key: json.loads(value) if _parses_as_json(value) else value for key, value in props.items()}


def _parses_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _check_metadata(model: PFLD, metadata: dict[str, Any]) -> None:
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"metadata lacks {missing}; an exported model must carry {list(METADATA_KEYS)}")
    for key, value in (("input_size", model.input_size), ("num_points", model.num_points)):
        if metadata[key] != value:
            raise ValueError(f"metadata {key}={metadata[key]!r} but the model has {key}={value}")


def _torch_export(model: PFLD, example: torch.Tensor, path: Path, opset: int) -> None:
    """Write `model` to `path` with the dynamo exporter, or the TorchScript one if dynamo fails."""
    try:
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
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
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def max_abs_difference(model: PFLD, path: str | Path, batch_size: int = PARITY_BATCH, seed: int = 0) -> float:
    """Max |onnxruntime - PyTorch| over the landmarks (in crop units, [0, 1]) of a random
    N(0, 1) batch of `batch_size` normalised images; `model` is evaluated as given (use eval mode)."""
    _, onnxruntime = _import_runtime()
    size = model.input_size
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, size, size, generator=generator)  # (B, 3, S, S)
    with torch.no_grad():
        expected = model(images).numpy()  # (B, K, 2)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})  # (B, K, 2)
    if actual.shape != expected.shape:
        raise RuntimeError(f"{path}: onnxruntime gives shape {actual.shape}, PyTorch {expected.shape}")
    return float(abs(actual - expected).max())


def export_onnx(
    model: PFLD, path: str | Path, metadata: dict[str, Any], opset: int = 18, atol: float = 1e-4
) -> Path:
    """Export `model` (without its auxiliary net) to ONNX at `path`, check it, and return the path.

    The graph has input `image` (B, 3, S, S) and output `landmarks` (B, K, 2) with a dynamic batch.
    `metadata` (at least `METADATA_KEYS`; `input_size` and `num_points` must match the model) is
    stored as `metadata_props`; read it back with `read_metadata`. Before returning, onnxruntime is
    compared with PyTorch on a random batch of 4: above `atol` (crop units) the file is removed and
    a RuntimeError raised. `model` itself is not modified (an eval-mode CPU copy is exported).
    """
    onnx, _ = _import_runtime()
    if model.auxiliary is not None:
        raise ValueError("the model still has its auxiliary pose net; export `model.without_auxiliary()`")
    _check_metadata(model, metadata)
    props = encode_metadata(metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().float().eval()
    size = model.input_size
    # batch 2, not 1: the exporter would specialise a batch of 1 to a constant
    example = torch.zeros(2, 3, size, size)
    try:
        _torch_export(model, example, path, opset)
        proto = onnx.load(str(path))
        for node in proto.graph.node:  # drop the exporter's per-node debug annotations (stack traces)
            del node.metadata_props[:]
        del proto.metadata_props[:]
        for key, value in props.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
        difference = max_abs_difference(model, path)
        if not difference <= atol:
            raise RuntimeError(
                f"{path}: onnxruntime differs from PyTorch by {difference:.3g} (max abs) > atol={atol:g}"
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored by `export_onnx`, decoded back to Python values."""
    onnx, _ = _import_runtime()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found")
    proto = onnx.load(str(path), load_external_data=False)
    return decode_metadata({prop.key: prop.value for prop in proto.metadata_props})


def export_checkpoint(checkpoint: str | Path, output: str | Path | None = None) -> Path:
    """Export a training checkpoint's landmark model with its data description as metadata;
    by default to `<checkpoint stem>.onnx` next to the checkpoint."""
    checkpoint = Path(checkpoint)
    model, data = load_inference_model(checkpoint)
    return export_onnx(model, checkpoint.with_suffix(".onnx") if output is None else output, data)
