"""`python -m export` (`export.command.run_export`) on a checkpoint trained for two steps on the sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from export.calibration import calibration_batches
from export.command import FP32_NAME, INT8_NAME, run_export
from export.gate import accuracy_gate
from export.onnx_export import read_metadata
from export.quantize import QUANTIZATION_KEY
from pfld.data.cache import build_face_cache
from pfld.data.crop import landmark_box
from pfld.data.dataset import LandmarkDataset
from pfld.data.normalize import model_input
from pfld.data.readers import read_landmark_csv
from pfld.data.schemes import ibug_68
from pfld.data.transforms import build_eval_transform
from pfld.inference import load_checkpoint
from tests.conftest import EMBEDDED, ROOT, compose_config, readme_python

pytestmark = pytest.mark.slow  # every test needs the checkpoint trained by tiny_checkpoint

#: Settings that keep a run to seconds: few latency runs, 32 calibration and 16 parity crops.
FAST = [
    "data.num_workers=0",
    "latency.runs=5",
    "latency.warmup=1",
    "quantize.calibration_images=32",
    "parity.images=16",
]


def export_config(checkpoint: Path, out: Path, *overrides: str):
    return compose_config("export", [f"ckpt={checkpoint}", f"out={out}", *FAST, *overrides], out)


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("export")
    return run_export(export_config(tiny_checkpoint, folder)), folder


@pytest.fixture(scope="module")
def val_crops() -> np.ndarray:
    """(32, 3, 112, 112) normalised crops of the embedded validation faces, as the model's input."""
    faces = build_face_cache(read_landmark_csv(EMBEDDED / "val.csv")[:32], 112, ibug_68())
    return next(calibration_batches(LandmarkDataset(faces, build_eval_transform(112), ibug_68()), 32, 32))


def test_writes_both_models_and_a_report(exported: tuple[dict[str, Any], Path]) -> None:
    report, folder = exported
    assert {FP32_NAME, INT8_NAME, "report.json", "report.md", "metrics.json"} <= {
        p.name for p in folder.iterdir()
    }
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["int8/nme"] == report["models"]["int8"]["nme"]
    assert metrics["gate/passed"] == report["gate"]["passed"]
    assert json.loads((folder / "report.json").read_text()) == json.loads(json.dumps(report))
    models = report["models"]
    assert models["pytorch"]["faces"] == models["fp32"]["faces"] == models["int8"]["faces"] == 160
    assert models["fp32"]["nme"] == pytest.approx(models["pytorch"]["nme"], abs=1e-6)
    assert models["int8"]["bytes"] < models["fp32"]["bytes"] / 2
    for name in ("fp32", "int8"):
        assert models[name]["bytes"] == (folder / models[name]["file"]).stat().st_size
        for key in ("nme", "failure_rate", "auc"):
            assert np.isfinite(models[name][key])
        one, every = models[name]["latency"]["one"], models[name]["latency"]["all"]
        assert one["threads"] == 1 and every["threads"] == report["threads_all"] >= 1
        assert (
            0 < one["p10_ms"] <= one["median_ms"] <= one["p90_ms"]
            and one["runs"] == 5
            and len(one["session_medians_ms"]) == 3
        )
    gate = report["gate"]
    expected = accuracy_gate(models["fp32"]["nme"], models["int8"]["nme"], 0.03)
    assert gate["passed"] == expected.passed and gate["relative_change"] == expected.relative_change
    assert report["parity"]["landmarks_max_abs"] <= 1e-4 and report["parity"]["images"] == 16
    markdown = (folder / "report.md").read_text()
    for text in (
        "| PyTorch |",
        "| ONNX fp32 | model.onnx |",
        "| ONNX int8 (arm) | model_int8.onnx |",
        "**Gate**",
    ):
        assert text in markdown


def test_models_describe_themselves(exported: tuple[dict[str, Any], Path]) -> None:
    _, folder = exported
    fp32 = read_metadata(folder / FP32_NAME)
    assert fp32["pfld.input_size"] == 112 and fp32["pfld.num_landmarks"] == 68
    assert fp32["pfld.crop_scale"] == 1.2 and fp32["pfld.scheme"] == "ibug68"
    assert fp32["pfld.mean"] == [0.485, 0.456, 0.406] and fp32["pfld.std"] == [0.229, 0.224, 0.225]
    int8 = read_metadata(folder / INT8_NAME)
    settings = int8.pop(QUANTIZATION_KEY)
    assert int8 == fp32
    assert settings["target"] == "arm" and settings["per_channel"] and settings["calibration_images"] == 32


def test_int8_runs_with_the_right_shape_and_range(
    exported: tuple[dict[str, Any], Path], val_crops: np.ndarray
) -> None:
    _, folder = exported
    session = onnxruntime.InferenceSession(str(folder / INT8_NAME), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["landmarks"]
    (landmarks,) = session.run(["landmarks"], {"image": val_crops})
    assert landmarks.shape == (32, 68, 2) and landmarks.dtype == np.float32
    assert np.isfinite(landmarks).all() and -0.25 < landmarks.min() and landmarks.max() < 1.25
    fp32 = onnxruntime.InferenceSession(str(folder / FP32_NAME), providers=["CPUExecutionProvider"])
    assert np.abs(fp32.run(["landmarks"], {"image": val_crops})[0] - landmarks).mean() < 0.02


def test_gate_fails_with_a_bad_threshold(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Demanding that int8 be 50 % better than fp32 must fail: exit status 1, with the advice."""
    command = [
        sys.executable, "-m", "export", f"ckpt={tiny_checkpoint}", f"out={tmp_path}",
        "gate.max_relative_nme_increase=-0.5", "quantize.enabled=true", *FAST,
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "gate.max_relative_nme_increase" in result.stderr and "quantize.keep_float" in result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert not report["gate"]["passed"] and report["gate"]["advice"]
    assert "**FAILED**" in (tmp_path / "report.md").read_text()
    kept = read_metadata(tmp_path / INT8_NAME)  # kept, for the user to inspect: a whole, described model
    assert kept[QUANTIZATION_KEY]["target"] == "arm" and kept["pfld.num_landmarks"] == 68


def test_pose_output_in_degrees(tiny_checkpoint: Path, tmp_path: Path, val_crops: np.ndarray) -> None:
    import torch

    report = run_export(export_config(tiny_checkpoint, tmp_path, "with_pose=true", "quantize.enabled=false"))
    assert report["gate"] is None and not (tmp_path / INT8_NAME).exists()
    assert "| ONNX fp32 | 160 |" in (tmp_path / "report.md").read_text()  # its pose error
    assert report["parity"]["pose_max_abs_deg"] <= 1e-2
    assert set(report["models"]["fp32"]["pose_mae_deg"]) == {"yaw", "pitch", "roll", "faces"}
    session = onnxruntime.InferenceSession(str(tmp_path / FP32_NAME), providers=["CPUExecutionProvider"])
    _, pose = session.run(["landmarks", "pose"], {"image": val_crops})
    model, _ = load_checkpoint(tiny_checkpoint, with_pose=True)
    with torch.no_grad():
        _, radians = model.forward_with_pose(torch.from_numpy(val_crops))
    assert pose.shape == (32, 3) and np.abs(pose - np.degrees(radians.numpy())).max() < 1e-2
    assert "pfld.pose" in read_metadata(tmp_path / FP32_NAME)


def test_refusals_come_before_any_work(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="quantize.target"):
        run_export(export_config(tiny_checkpoint, out, "quantize.target=riscv"))
    with pytest.raises(ValueError, match="quantize.method"):
        run_export(export_config(tiny_checkpoint, out, "quantize.method=magic"))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        run_export(export_config(tmp_path / "missing.ckpt", out))
    with pytest.raises(ValueError, match="98"):
        run_export(export_config(tiny_checkpoint, out, "data=wflw"))
    assert not out.exists()


def readme_recipe() -> dict[str, Any]:
    """The README's standalone ONNX recipe (the python block after `<!-- standalone-onnx -->`), executed."""
    return readme_python("standalone-onnx")


class Recording:
    """An onnxruntime session that keeps the input it is given and answers with ``answer`` (1, K, 2)."""

    def __init__(self, session: Any, answer: np.ndarray) -> None:
        self.session, self.answer, self.image = session, answer, None

    def get_modelmeta(self) -> Any:
        return self.session.get_modelmeta()

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.image = feeds["image"]
        return [self.answer]


def test_readme_recipe_needs_only_the_file(exported: tuple[dict[str, Any], Path]) -> None:
    """Metadata, numpy and OpenCV alone reproduce pfld's input and decode its output: on real photos the
    recipe's input is pfld's validation crop, and the crop's true points come back to the annotation."""
    import cv2

    _, folder = exported
    predict_landmarks = readme_recipe()["predict_landmarks"]
    session = onnxruntime.InferenceSession(str(folder / FP32_NAME), providers=["CPUExecutionProvider"])
    records = read_landmark_csv(EMBEDDED / "val.csv")[:8]
    faces = build_face_cache(records, 112, ibug_68())
    dataset = LandmarkDataset(faces, build_eval_transform(112), ibug_68())
    for index, record in enumerate(records):
        photo = cv2.cvtColor(cv2.imread(str(record.image_path)), cv2.COLOR_BGR2RGB)
        box = landmark_box(record.landmarks)
        sample = dataset[index]
        recording = Recording(session, sample["landmarks"][None].numpy())
        points = predict_landmarks(recording, photo, box)
        expected = model_input(sample["image"], dataset.mean, dataset.std).contiguous().numpy()
        difference = np.abs(recording.image - expected)
        grey_level = 1.0 / (255 * 0.224) + 1e-5  # one uint8 step, normalised (OpenCV's fixed-point rounding)
        assert difference.max() <= grey_level and (difference > 1e-5).mean() < 1e-3
        np.testing.assert_allclose(points, record.landmarks, atol=1e-3)  # pixels
        assert predict_landmarks(session, photo, box).shape == (68, 2)  # and it runs for real
