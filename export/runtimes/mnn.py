"""MNN: fp32 and 8-bit weights through MNN's converter, from the checked ONNX file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from export.runtimes.common import MissingRuntime, Runner, Written, batched, require
from pfld.io.atomic import staged


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
    return Written(key, label, [path], batched(run), run, details, with_pose=with_pose)


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
