"""LiteRT (TensorFlow Lite): fp32 and full-integer int8 through litert-torch, run by ai-edge-litert."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export.runtimes.common import Runner, Written, batched, require
from pfld.io.atomic import staged


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
    return Written(key, label, [path], batched(run), run, details, with_pose="pose_output" in described)


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
