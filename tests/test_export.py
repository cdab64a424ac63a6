"""Tests for export.onnx_export: parity with PyTorch at several batch sizes, metadata, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from export import onnx_export
from export.onnx_export import export_checkpoint, export_onnx, read_metadata
from pfld.models import PFLD, PFLDBackbone

SIZE = 64
POINTS = 68


def tiny_model(auxiliary: bool = False) -> PFLD:
    torch.manual_seed(0)
    return PFLD(PFLDBackbone(0.25), POINTS, SIZE, auxiliary=auxiliary).eval()


def tiny_metadata() -> dict[str, Any]:
    return {
        "input_size": SIZE,
        "crop_scale": 1.2,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "scheme": "ibug68",
        "num_points": POINTS,
        "normalization": [36, 45],
        "coordinates": "x, y in [0, 1] of the square crop",
        "note": "42",  # a string that parses as JSON must come back as a string
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[PFLD, Path]:
    model = tiny_model()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", tiny_metadata())
    return model, path


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


def test_metadata_must_match_the_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="input_size"):
        export_onnx(tiny_model(), tmp_path / "x.onnx", dict(tiny_metadata(), input_size=112))


def test_auxiliary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "aux.onnx"
    with pytest.raises(ValueError, match="without_auxiliary"):
        export_onnx(tiny_model(auxiliary=True), path, tiny_metadata())
    assert not path.exists()


def test_incomplete_metadata_is_refused(tmp_path: Path) -> None:
    metadata = tiny_metadata()
    del metadata["crop_scale"]
    with pytest.raises(ValueError, match="crop_scale"):
        export_onnx(tiny_model(), tmp_path / "m.onnx", metadata)


def test_parity_failure_removes_the_file(
    exported: tuple[PFLD, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed check leaves no file behind (the slow export is replaced by a copy) nor a changed model."""
    onnx_bytes = exported[1].read_bytes()
    monkeypatch.setattr(onnx_export, "_torch_export", lambda m, x, path, opset: path.write_bytes(onnx_bytes))
    monkeypatch.setattr(onnx_export, "max_abs_difference", lambda model, path: 0.5)
    model, path = tiny_model().train(), tmp_path / "bad.onnx"
    with pytest.raises(RuntimeError, match="0.5"):
        export_onnx(model, path, tiny_metadata())
    assert not path.exists()
    assert model.training


def test_export_checkpoint_defaults_next_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model(auxiliary=True)
    data = {key: value for key, value in tiny_metadata().items() if key != "note"}
    checkpoint = tmp_path / "epoch001.ckpt"
    torch.save(
        {
            "hyper_parameters": {
                "model": {
                    "_target_": "pfld.models.PFLD",
                    "num_points": POINTS,
                    "input_size": SIZE,
                    "auxiliary": True,
                    "backbone": {"_target_": "pfld.models.PFLDBackbone", "width": 0.25},
                },
                "data": data,
            },
            "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()},
        },
        checkpoint,
    )
    calls = []
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *args: calls.append(args) or Path(args[1]))
    assert export_checkpoint(checkpoint) == tmp_path / "epoch001.onnx"
    exported_model, _, metadata = calls[0]
    assert exported_model.auxiliary is None and metadata == data
    assert export_checkpoint(checkpoint, tmp_path / "out" / "m.onnx") == tmp_path / "out" / "m.onnx"


def test_falls_back_to_torchscript_when_dynamo_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_export = torch.onnx.export

    def dynamo_fails(*args: Any, dynamo: bool, **kwargs: Any) -> Any:
        if dynamo:
            raise RuntimeError("simulated dynamo failure")
        return real_export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    path = export_onnx(tiny_model(), tmp_path / "legacy.onnx", tiny_metadata())
    assert "retrying with dynamo=False" in capsys.readouterr().out
    assert read_metadata(path) == tiny_metadata()
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param
