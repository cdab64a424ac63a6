"""Tests for export.quantize and export.calibration: int8 QDQ models from real crops of the embedded sample."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from export.calibration import ImageCalibrationReader, calibration_batches, calibration_indices
from export.onnx_export import export_onnx, read_metadata
from export.quantize import QUANTIZATION_KEY, first_and_last_nodes, quantize_int8, resolve_keep_float
from pfld.data.cache import build_face_cache
from pfld.data.dataset import LandmarkDataset
from pfld.data.normalize import model_input
from pfld.data.readers import read_landmark_csv
from pfld.data.schemes import ibug_68
from pfld.data.transforms import build_eval_transform
from tests.export.test_export import POINTS, SIZE, tiny_metadata, tiny_model
from tests.helpers import mean_abs_difference

CALIBRATION = 32
FACES = 64
STEPS = 40


@pytest.fixture(scope="module")
def crops(embedded_dir: Path) -> LandmarkDataset:
    """Real policy crops (no augmentation) of the first faces of the embedded training sample."""
    faces = build_face_cache(read_landmark_csv(embedded_dir / "train.csv")[:FACES], SIZE, ibug_68())
    return LandmarkDataset(faces, build_eval_transform(SIZE), ibug_68())


@pytest.fixture(scope="module")
def fp32(crops: LandmarkDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 0.25X PFLD fitted for a few Adam steps on the crops (so outputs sit in [0, 1]), exported. It
    trains: the tests that use it (or `int8`) are slow."""
    model = tiny_model().train()
    images = model_input(torch.stack([crops[i]["image"] for i in range(len(crops))]))  # (N, 3, S, S)
    targets = torch.stack([crops[i]["landmarks"] for i in range(len(crops))])  # (N, K, 2)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(STEPS):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(model(images), targets)
        loss.backward()
        optimiser.step()
    return export_onnx(model.eval(), tmp_path_factory.mktemp("quant") / "fp32.onnx", tiny_metadata()).path


@pytest.fixture(scope="module")
def int8(fp32: Path, crops: LandmarkDataset) -> dict[str, Path]:
    """The fp32 model quantised for each target from 32 evenly spaced crops."""
    paths = {}
    for target in ("arm", "x86"):
        start = time.perf_counter()
        paths[target] = quantize_int8(
            fp32, fp32.with_name(f"{target}.onnx"), calibration_batches(crops, CALIBRATION, 8), target
        )
        print(f"\nquantised for {target} in {time.perf_counter() - start:.2f} s")
    return paths


def _ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_calibration_batches_are_deterministic_real_crops(crops: LandmarkDataset) -> None:
    batches = list(calibration_batches(crops, CALIBRATION, 10))
    assert [len(b) for b in batches] == [10, 10, 10, 2]
    assert all(b.shape[1:] == (3, SIZE, SIZE) and b.dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(
        np.concatenate(batches), np.concatenate(list(calibration_batches(crops, 32)))
    )
    expected = model_input(crops[2]["image"], crops.mean, crops.std)[0].numpy()
    np.testing.assert_array_equal(batches[0][1], expected)  # every other face of 64
    assert calibration_indices(5, 100).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="at least 1"):
        calibration_indices(5, 0)


def test_reader_feeds_the_input_name_and_rewinds() -> None:
    images = [np.zeros((3, SIZE, SIZE), np.float32), np.ones((2, 3, SIZE, SIZE), np.float32)]
    reader = ImageCalibrationReader(images, "image")
    assert reader.count == 3 and len(reader) == 2 and reader.image_shape == (3, SIZE, SIZE)
    first = reader.get_next()
    assert list(first) == ["image"] and first["image"].shape == (1, 3, SIZE, SIZE)
    assert reader.get_next()["image"].shape == (2, 3, SIZE, SIZE) and reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["image"], first["image"])
    with pytest.raises(ValueError, match="empty"):
        ImageCalibrationReader([])
    with pytest.raises(ValueError, match="shape"):
        ImageCalibrationReader([np.zeros((2, SIZE, SIZE), np.float32)])
    with pytest.raises(TypeError, match="dtype"):
        ImageCalibrationReader([np.zeros((3, SIZE, SIZE), np.uint8)])


@pytest.mark.slow
@pytest.mark.parametrize("target", ["arm", "x86"])
def test_int8_runs_close_to_fp32_and_is_smaller(
    fp32: Path, int8: dict[str, Path], crops: LandmarkDataset, target: str
) -> None:
    path = int8[target]
    ops = _ops(path)
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = next(calibration_batches(crops, 5, 5))
    (landmarks,) = session.run(["landmarks"], {"image": batch})
    assert landmarks.shape == (5, POINTS, 2)
    assert np.isfinite(landmarks).all() and -0.5 < landmarks.min() and landmarks.max() < 1.5
    difference = mean_abs_difference(fp32, path, calibration_batches(crops, FACES, 16))
    sizes = fp32.stat().st_size, path.stat().st_size
    print(
        f"\n{target}: fp32 {sizes[0] / 1024:.0f} KiB, int8 {sizes[1] / 1024:.0f} KiB, mean |diff| {difference:.4f}"
    )
    assert difference < 0.05
    assert sizes[1] < sizes[0]


@pytest.mark.slow
def test_int8_keeps_the_metadata(int8: dict[str, Path]) -> None:
    metadata = read_metadata(int8["arm"])
    settings = metadata.pop(QUANTIZATION_KEY)
    assert metadata == tiny_metadata()
    assert settings == {
        "target": "arm",
        "per_channel": True,
        "method": "minmax",
        "excluded": [],
        "calibration_images": CALIBRATION,
    }
    assert json.loads(onnx.load(str(int8["x86"])).metadata_props[-1].value)["target"] == "x86"


@pytest.mark.slow
def test_x86_uses_unsigned_activations_and_arm_signed(int8: dict[str, Path]) -> None:
    def activation_zero_point_type(path: Path) -> int:
        model = onnx.load(str(path))
        initialisers = {init.name: init for init in model.graph.initializer}
        first = next(node for node in model.graph.node if node.op_type == "QuantizeLinear")
        return initialisers[first.input[2]].data_type

    assert activation_zero_point_type(int8["arm"]) == onnx.TensorProto.INT8
    assert activation_zero_point_type(int8["x86"]) == onnx.TensorProto.UINT8


@pytest.mark.slow
def test_excluded_nodes_stay_float(fp32: Path, crops: LandmarkDataset, tmp_path: Path) -> None:
    excluded = first_and_last_nodes(fp32)
    graph = onnx.load(str(fp32)).graph
    kinds = {node.name: node.op_type for node in graph.node}
    assert kinds[excluded[0]] == "Conv" and kinds[excluded[1]] in ("Gemm", "MatMul")
    path = quantize_int8(fp32, tmp_path / "mixed.onnx", calibration_batches(crops, 8, 8), exclude=excluded)
    model = onnx.load(str(path))
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    floats = {init.name for init in model.graph.initializer if init.data_type == onnx.TensorProto.FLOAT}
    nodes = {node.name: node for node in model.graph.node}
    for name in excluded:
        assert name in nodes and nodes[name].op_type == kinds[name], f"{name} vanished from the int8 graph"
        weight = nodes[name].input[1]
        assert weight in floats and weight not in producers, f"{name}: weight {weight} is not float"
    # the first Conv reads the float image itself (the last layer's input may still be rounded by the
    # QuantizeLinear / DequantizeLinear pair of the quantised Concat before it, but it computes in float)
    assert nodes[excluded[0]].input[0] == model.graph.input[0].name
    assert read_metadata(path)[QUANTIZATION_KEY]["excluded"] == excluded
    quantised = next(n for n in model.graph.node if n.op_type == "Conv" and n.name not in excluded)
    assert any(producers.get(i) == "DequantizeLinear" for i in quantised.input)


@pytest.mark.slow
def test_refusals_leave_no_file(fp32: Path, crops: LandmarkDataset, tmp_path: Path) -> None:
    out = tmp_path / "bad.onnx"
    with pytest.raises(ValueError, match="not in the"):
        quantize_int8(fp32, out, calibration_batches(crops, 4, 4), exclude=["no_such_node"])
    assert not out.exists()
    with pytest.raises(ValueError, match="target"):
        quantize_int8(fp32, out, [], target="riscv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overwrite"):
        quantize_int8(fp32, fp32, calibration_batches(crops, 4, 4))
    with pytest.raises(FileNotFoundError):
        quantize_int8(tmp_path / "missing.onnx", out, [])


def test_last_fc_is_the_landmark_regressor_not_the_pose_net(tmp_path: Path) -> None:
    path = export_onnx(
        tiny_model(auxiliary=True), tmp_path / "pose.onnx", tiny_metadata(True), with_pose=True
    ).path
    graph = onnx.load(str(path)).graph
    first, last = first_and_last_nodes(path)
    producers = {out: node for node in graph.node for out in node.output}

    def upstream(output: str) -> set[str]:
        names, pending = set(), [output]
        while pending:
            node = producers.get(pending.pop())
            if node is not None and node.name not in names:
                names.add(node.name)
                pending += list(node.input)
        return names

    assert last in upstream("landmarks") and last not in upstream("pose")
    assert first in upstream("pose") and first in upstream("landmarks")
    assert resolve_keep_float(path, ["last_fc", "first_conv", "node_x"]) == [last, first, "node_x"]
    assert resolve_keep_float(path, []) == []


def _activation_scales(path: Path) -> dict[str, float]:
    """Scale of each QuantizeLinear fed by a computed tensor (activations, not weights)."""
    model = onnx.load(str(path))
    initialisers = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    return {
        node.input[0]: float(initialisers[node.input[1]])
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] not in initialisers
    }


@pytest.mark.slow
def test_entropy_calibration_is_not_minmax_in_disguise(
    fp32: Path, int8: dict[str, Path], crops: LandmarkDataset, tmp_path: Path
) -> None:
    """onnxruntime's own entropy settings reproduce minmax exactly; ours must clip some activations."""
    path = quantize_int8(
        fp32, tmp_path / "entropy.onnx", calibration_batches(crops, CALIBRATION, 8), method="entropy"
    )
    minmax, entropy = _activation_scales(int8["arm"]), _activation_scales(path)
    assert minmax.keys() == entropy.keys()
    smaller = [name for name in minmax if entropy[name] < 0.99 * minmax[name]]
    assert len(smaller) >= len(minmax) // 4, f"entropy clipped only {smaller}"
    assert read_metadata(path)[QUANTIZATION_KEY]["method"] == "entropy"
