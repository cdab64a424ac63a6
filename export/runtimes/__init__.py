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

from export.runtimes.common import (
    FORMATS,
    INPUT_LAYOUTS,
    NCNN_INPUT,
    NCNN_OUTPUT,
    NCNN_POSE,
    POSE_LAYOUT,
    REQUIREMENTS,
    BatchPredictor,
    MissingRuntime,
    Runner,
    Written,
    batched,
    check_formats,
    check_parity,
    remove,
    require,
    runtime_latency,
    sidecar,
)
from export.runtimes.litert import export_tflite, tflite_runner
from export.runtimes.mnn import export_mnn, mnn_runner
from export.runtimes.ncnn import NCNN_WEIGHTED, NcnnLayer, export_ncnn, export_ncnn_int8, ncnn_runner

__all__ = [
    "FORMATS",
    "INPUT_LAYOUTS",
    "NCNN_INPUT",
    "NCNN_OUTPUT",
    "NCNN_POSE",
    "NCNN_WEIGHTED",
    "POSE_LAYOUT",
    "REQUIREMENTS",
    "BatchPredictor",
    "MissingRuntime",
    "NcnnLayer",
    "Runner",
    "Written",
    "batched",
    "check_formats",
    "check_parity",
    "export_mnn",
    "export_ncnn",
    "export_ncnn_int8",
    "export_tflite",
    "mnn_runner",
    "ncnn_runner",
    "remove",
    "require",
    "runtime_latency",
    "sidecar",
    "tflite_runner",
]
