"""Head pose from landmarks: the regressor's features, its training, its file, the predictor using it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pfld.data.crop import landmark_box
from pfld.data.readers import read_pts
from pfld.data.schemes import load_scheme
from pfld.io.images import read_image
from pfld.predict.pose_regressor import PoseRegressor, fit_pose_regressor, pose_features
from tests.conftest import FIXTURES, ROOT

PHOTOS = FIXTURES / "photos"
SHIPPED = ROOT / "pfld" / "predict" / "weights" / "pose_ibug68.pt"


def test_features_ignore_position_and_scale() -> None:
    points = np.random.default_rng(0).uniform(0, 100, (4, 68, 2)).astype(np.float32)
    moved = points * 2.5 + np.float32([30, -7])
    torch.testing.assert_close(pose_features(moved), pose_features(points), atol=1e-5, rtol=1e-5)
    assert pose_features(points[0]).shape == (1, 136)


def test_regressor_learns_roll_from_rotated_faces(tmp_path: Path) -> None:
    """Faces rolled in the image plane: the regressor must read the roll off the points (held-out MAE
    under a degree), and keep it through save and load."""
    template = read_pts(PHOTOS / "1204062305_1.pts", 68)
    rng = np.random.default_rng(0)
    rolls = rng.uniform(-0.6, 0.6, 600)
    cos, sin = np.cos(rolls), np.sin(rolls)
    rotation = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)  # (N, 2, 2)
    points = np.einsum("nij,kj->nki", rotation, template - template.mean(0)).astype(np.float32)
    angles = np.stack([np.zeros_like(rolls), np.zeros_like(rolls), rolls], 1)
    regressor = fit_pose_regressor(points[:500], angles[:500], "ibug68", steps=400)
    error = np.abs(regressor(points[500:])[:, 2] - rolls[500:]).mean()
    assert np.rad2deg(error) < 1.0
    regressor.save(tmp_path / "pose.pt")
    again = PoseRegressor.load(tmp_path / "pose.pt")
    np.testing.assert_allclose(again(points[500:]), regressor(points[500:]), atol=1e-6)
    assert again(points[0]).shape == (3,)
    with pytest.raises(ValueError, match="takes 68 points"):
        again(points[:, :5])
    with pytest.raises(ValueError, match="at least 10 faces"):
        fit_pose_regressor(points[:5], angles[:5], "ibug68")


def test_bad_regressor_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt: no such pose regressor"):
        PoseRegressor.load(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a pose regressor"):
        PoseRegressor.load(tmp_path / "other.pt")


def test_shipped_regressor_reads_the_annotated_faces_pose() -> None:
    """The shipped regressor (trained on the shared Helen and ytf68 faces) against the solvePnP fit
    of the annotation, on the committed AFW faces it never saw."""
    from pfld.data.attributes import fit_angles

    regressor = PoseRegressor.load(SHIPPED)
    scheme = load_scheme("ibug68")
    errors = []
    for pts in sorted(PHOTOS.glob("*_*.pts")):
        points = read_pts(pts, 68)
        box = landmark_box(points)
        side = float((box[2:] - box[:2]).max()) * 1.2
        crop = points - ((box[:2] + box[2:]) / 2 - side / 2)
        fitted = fit_angles(crop, scheme, side)  # radians
        errors.append(np.abs(np.rad2deg(regressor(crop) - fitted)))
    assert len(errors) == 7 and np.mean(errors) < 4.0  # degrees; on AFW: 1.08, 1.04, 0.25


def test_predictor_takes_its_pose_from_the_regressor() -> None:
    pytest.importorskip("onnxruntime")
    from pfld.predict import Predictor, load_landmark_model

    model = load_landmark_model(FIXTURES / "models" / "pfld_025x_300w_int8.onnx")
    truth = read_pts(PHOTOS / "1204062305_1.pts", 68)
    image = read_image(PHOTOS / "1204062305.jpg")
    fitted = Predictor(model).predict(image, boxes=[landmark_box(truth)])[0]
    regressed = Predictor(model, pose_regressor=PoseRegressor.load(SHIPPED)).predict(
        image, boxes=[landmark_box(truth)]
    )[0]
    assert fitted.pose_source == "landmarks" and regressed.pose_source == "regressor"
    assert np.abs(regressed.pose_deg - fitted.pose_deg).max() < 6.0
    with pytest.raises(ValueError, match="takes 15 points"):
        Predictor(model, pose_regressor=PoseRegressor(15, "kaggle15"))


def test_command_uses_a_pose_regressor_file(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    import json

    from pfld.cli.predict import main

    model = FIXTURES / "models" / "pfld_025x_300w_int8.onnx"
    photo = PHOTOS / "1204062305.jpg"
    argv = [str(photo), "--model", str(model), "--out", str(tmp_path), "--no-draw"]
    assert main([*argv, "--pose-regressor", str(SHIPPED)]) == 0
    (face,) = json.loads((tmp_path / "1204062305.json").read_text())["faces"]
    assert face["pose_source"] == "regressor" and set(face["pose_deg"]) == {"yaw", "pitch", "roll"}
    assert main([*argv, "--pose-regressor", str(tmp_path / "none.pt")]) == 2
