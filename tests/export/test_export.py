"""Tests for export.onnx_export: parity with PyTorch at several batch sizes, metadata, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from export import onnx_export
from export.onnx_export import export_onnx, read_metadata
from pfld.inference.spec import REQUIRED_KEYS, ModelSpec
from pfld.models import PFLD, PFLDBackbone

SIZE = 64
POINTS = 68


def tiny_model(auxiliary: bool = False) -> PFLD:
    torch.manual_seed(0)
    return PFLD(PFLDBackbone(0.25), POINTS, SIZE, auxiliary=auxiliary).eval()


DESCRIPTION = {
    "input_size": SIZE,
    "crop_scale": 1.2,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "scheme": "ibug68",
    "num_points": POINTS,
    "normalization": [36, 45],
    "normalization_mode": "inter_ocular",
}


def tiny_metadata(with_pose: bool = False) -> dict[str, Any]:
    metadata = ModelSpec.from_hparams(DESCRIPTION, with_pose=with_pose).to_metadata()
    return metadata | {"note": "42"}  # a JSON-like string stays a string


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[PFLD, Path]:
    model = tiny_model()
    exported = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", tiny_metadata())
    assert exported.check_images == 4 and exported.landmark_difference <= 1e-4
    assert exported.pose_difference_deg is None
    return model, exported.path


@pytest.mark.parametrize("batch_size", [1, 3])
def test_onnxruntime_matches_torch(exported: tuple[PFLD, Path], batch_size: int) -> None:
    model, path = exported
    images = torch.randn(batch_size, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch_size))
    with torch.no_grad():
        expected = model(images).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["landmarks"], {"image": images.numpy()})
    assert actual.shape == (batch_size, POINTS, 2)
    assert abs(actual - expected).max() <= 1e-4


def test_graph_names_and_dynamic_batch(exported: tuple[PFLD, Path]) -> None:
    graph = onnx.load(str(exported[1])).graph
    assert [i.name for i in graph.input] == ["image"]
    assert [o.name for o in graph.output] == ["landmarks"]
    batch, *rest = graph.input[0].type.tensor_type.shape.dim
    assert batch.dim_param and not batch.HasField("dim_value")
    assert [d.dim_value for d in rest] == [3, SIZE, SIZE]


def test_metadata_round_trips(exported: tuple[PFLD, Path]) -> None:
    assert read_metadata(exported[1]) == tiny_metadata()


def test_metadata_is_readable_without_pfld(exported: tuple[PFLD, Path]) -> None:
    """The required keys, as any program sees them: plain strings holding ints, floats and lists."""
    props = {prop.key: prop.value for prop in onnx.load(str(exported[1])).metadata_props}
    assert set(REQUIRED_KEYS) <= set(props)
    assert int(props["pfld.input_size"]) == SIZE and int(props["pfld.num_landmarks"]) == POINTS
    assert float(props["pfld.crop_scale"]) == 1.2 and props["pfld.scheme"] == "ibug68"
    assert [float(v) for v in props["pfld.mean"].strip("[]").split(",")] == [0.485, 0.456, 0.406]
    assert [float(v) for v in props["pfld.std"].strip("[]").split(",")] == [0.229, 0.224, 0.225]
    assert "(i + 0.5) / S" in props["pfld.landmarks"] and "pfld.pose" not in props
    assert props["note"] == '"42"'  # quoted, so that it reads back as a string


def test_metadata_must_match_the_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="input_size"):
        export_onnx(tiny_model(), tmp_path / "x.onnx", tiny_metadata() | {"pfld.input_size": 112})
    with pytest.raises(ValueError, match="three floats"):
        export_onnx(tiny_model(), tmp_path / "x.onnx", tiny_metadata() | {"pfld.std": [0.2, 0.2]})
    with pytest.raises(ValueError, match="num_points"):
        ModelSpec.from_hparams({k: v for k, v in DESCRIPTION.items() if k != "num_points"})


def test_auxiliary_net_is_left_out(exported: tuple[PFLD, Path], tmp_path: Path) -> None:
    model = tiny_model(auxiliary=True)
    path = export_onnx(model, tmp_path / "aux.onnx", tiny_metadata()).path
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["landmarks"]
    assert path.stat().st_size == pytest.approx(exported[1].stat().st_size, rel=0.01)
    assert model.auxiliary is not None  # the caller's model keeps it


def test_pose_output_in_degrees(tmp_path: Path) -> None:
    model = tiny_model(auxiliary=True)
    exported = export_onnx(model, tmp_path / "pose.onnx", tiny_metadata(True), with_pose=True)
    assert exported.pose_difference_deg is not None and exported.pose_difference_deg <= 1e-2
    graph = onnx.load(str(exported.path)).graph
    assert [o.name for o in graph.output] == ["landmarks", "pose"]
    images = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    session = onnxruntime.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    landmarks, pose = session.run(["landmarks", "pose"], {"image": images.numpy()})
    with torch.no_grad():
        expected_landmarks, radians = model.forward_with_pose(images)
    assert landmarks.shape == (3, POINTS, 2) and pose.shape == (3, 3)
    assert abs(pose - torch.rad2deg(radians).numpy()).max() <= 1e-3
    assert abs(landmarks - expected_landmarks.numpy()).max() <= 1e-4
    assert read_metadata(exported.path)["pfld.outputs"] == ["landmarks", "pose"]
    with pytest.raises(ValueError, match="auxiliary"):
        export_onnx(tiny_model(), tmp_path / "nopose.onnx", tiny_metadata(True), with_pose=True)


def test_incomplete_metadata_is_refused(tmp_path: Path) -> None:
    metadata = tiny_metadata()
    del metadata["pfld.crop_scale"]
    with pytest.raises(ValueError, match="crop_scale"):
        export_onnx(tiny_model(), tmp_path / "m.onnx", metadata)


def test_check_images_must_fit_the_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="check_images"):
        export_onnx(tiny_model(), tmp_path / "m.onnx", tiny_metadata(), check_images=np.zeros((2, 3, 32, 32)))
    assert not (tmp_path / "m.onnx").exists()


def test_parity_failure_removes_the_file(
    exported: tuple[PFLD, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed check leaves no file behind (the slow export is replaced by a copy) nor a changed model."""
    onnx_bytes = exported[1].read_bytes()
    monkeypatch.setattr(
        onnx_export, "_torch_export", lambda m, x, path, opset, outputs: path.write_bytes(onnx_bytes)
    )
    monkeypatch.setattr(onnx_export, "max_abs_difference", lambda model, path, images: {"landmarks": 0.5})
    model, path = tiny_model().train(), tmp_path / "bad.onnx"
    with pytest.raises(RuntimeError, match="0.5"):
        export_onnx(model, path, tiny_metadata())
    assert not path.exists()
    assert model.training


def test_falls_back_to_torchscript_when_dynamo_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_export = torch.onnx.export

    def dynamo_fails(*args: Any, dynamo: bool, **kwargs: Any) -> Any:
        if dynamo:
            raise RuntimeError("simulated dynamo failure")
        return real_export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    path = export_onnx(tiny_model(), tmp_path / "legacy.onnx", tiny_metadata()).path
    assert "retrying with dynamo=False" in capsys.readouterr().out
    assert read_metadata(path) == tiny_metadata()
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param


def test_an_ncnn_param_line_survives_a_parse_and_a_rewrite():
    from export.runtimes import NcnnLayer

    line = "ConvolutionDepthWise convdwrelu_0 1 1 1 2 0=64 1=3 11=3 5=1 6=576 7=64 9=1"
    layer = NcnnLayer.parse(line)
    assert (layer.kind, layer.name, layer.bottoms, layer.tops) == (
        "ConvolutionDepthWise",
        "convdwrelu_0",
        ["1"],
        ["2"],
    )
    assert layer.params == {"0": "64", "1": "3", "11": "3", "5": "1", "6": "576", "7": "64", "9": "1"}
    assert NcnnLayer.parse(layer.line()) == layer


def test_ncnn_int8_refuses_layers_whose_weights_it_cannot_walk(tmp_path):
    pytest.importorskip("ncnn")
    from export.runtimes import Written, export_ncnn_int8

    param, weights = tmp_path / "model.ncnn.param", tmp_path / "model.ncnn.bin"
    param.write_text("7767517\n2 2\nInput in0 0 1 in0\nBatchNorm bn_0 1 1 in0 out0 0=3\n")
    weights.write_bytes(bytes(24))
    fp32 = Written("ncnn_fp32", "ncnn fp32", [param, weights], lambda x: (x, None), lambda x: x)
    with pytest.raises(
        ValueError, match=r"model.ncnn.param: ncnn int8 does not know the weights of layers \['BatchNorm'\]"
    ):
        export_ncnn_int8(fp32, tmp_path, [np.zeros((1, 3, 8, 8), np.float32)])
