"""Face detectors (BlazeFace's decoding, tiles and merging; the detector registry and its errors) and
video tracking (detection every n-th frame, following faces from their landmarks in between)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pfld.data.crop import landmark_box
from pfld.data.readers import read_pts
from pfld.io.images import read_image
from pfld.metrics import nme
from pfld.predict.blazeface import MODELS, TILE_MAX_FACE, ssd_anchors, weighted_nms
from pfld.predict.detector import DETECTORS, create_detector
from tests.conftest import FIXTURES

PHOTOS = FIXTURES / "photos"
MODEL = FIXTURES / "models" / "pfld_025x_300w_int8.onnx"


def test_anchors_match_mediapipes_layout() -> None:
    short = MODELS["short"]
    anchors = ssd_anchors(short.input_size, short.strides, short.two_per_cell)
    # 16 x 16 cells with 2 anchors, then 8 x 8 cells with 3 layers x 2 anchors: the model's 896 outputs
    assert anchors.shape == (896, 2)
    np.testing.assert_allclose(anchors[:3], [[1 / 32, 1 / 32]] * 2 + [[3 / 32, 1 / 32]])
    np.testing.assert_allclose(anchors[512:518], [[1 / 16, 1 / 16]] * 6)
    full = MODELS["full"]
    anchors = ssd_anchors(full.input_size, full.strides, full.two_per_cell)
    assert anchors.shape == (2304, 2) and anchors.min() == pytest.approx(1 / 96)


def test_weighted_nms_merges_overlapping_boxes_by_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.6, 0.7])
    merged, kept = weighted_nms(boxes, scores, iou=0.3)
    np.testing.assert_allclose(kept, [0.9, 0.7])  # best first; the merged face keeps its best score
    np.testing.assert_allclose(merged[0], [0.4, 0, 10.4, 10])  # (0.9 * 0 + 0.6 * 1) / 1.5 = 0.4
    np.testing.assert_allclose(merged[1], boxes[2])
    empty_boxes, empty_scores = weighted_nms(np.zeros((0, 4)), np.zeros(0), 0.3)
    assert empty_boxes.shape == (0, 4) and empty_scores.shape == (0,)


@pytest.fixture(scope="module")
def blazeface():
    pytest.importorskip("ai_edge_litert")
    return create_detector("blazeface")


def test_tiles_hold_every_small_face_whole(blazeface) -> None:
    """Every face small enough for a tile to answer for lies wholly inside at least one tile, so the
    tiles' rule (only faces wholly inside, up to TILE_MAX_FACE of the tile) loses none."""
    for shape in [(480, 640, 3), (377, 640, 3), (640, 427, 3), (1080, 1920, 3)]:
        tiles = np.array(blazeface.tiles(shape))
        side = tiles[0, 2]
        assert side == 240 and (tiles[:, 2] == side).all()  # 10 x the 24 px smallest face
        rng = np.random.default_rng(0)
        for _ in range(300):
            size = rng.uniform(24, TILE_MAX_FACE * side)
            x, y = rng.uniform(0, shape[1] - size), rng.uniform(0, shape[0] - size)
            inside = (
                (tiles[:, 0] <= x) & (tiles[:, 1] <= y)
                & (x + size <= tiles[:, 0] + side) & (y + size <= tiles[:, 1] + side)
            )  # fmt: skip
            assert inside.any(), f"a {size:.0f} px face at ({x:.0f}, {y:.0f}) of a {shape} photo"
    assert blazeface.tiles((200, 240, 3)) == []  # no larger than one tile: the whole-photo passes see it


def test_blazeface_finds_the_committed_faces_and_nothing_in_a_blank(blazeface) -> None:
    found = 0
    for photo in sorted(PHOTOS.glob("*.jpg")):
        detections = blazeface(read_image(photo))
        assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
        for pts in sorted(PHOTOS.glob(f"{photo.stem}_*.pts")):
            box = landmark_box(read_pts(pts, 68))
            centres = [(d.box[:2] + d.box[2:]) / 2 for d in detections]
            found += any(((c >= box[:2]) & (c <= box[2:])).all() for c in centres)
    assert found == 7  # every annotated face of the 4 photos, the turned one included
    assert blazeface(np.full((480, 640, 3), 128, np.uint8)) == []
    with pytest.raises(ValueError, match="uint8 RGB"):
        blazeface(np.zeros((10, 10), np.uint8))


def test_detector_registry_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DETECTORS[0] == "blazeface"  # the default
    with pytest.raises(ValueError, match="unknown face detector 'hog'; choose one of blazeface, dlib"):
        create_detector("hog")
    with pytest.raises(ValueError, match="min_face must be > 0"):
        create_detector("blazeface", min_face=0)
    with pytest.raises(ValueError, match="unknown BlazeFace models"):
        create_detector("blazeface", models=("long",))
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ImportError, match=r"pip install ai-edge-litert .* or use --detector dlib"):
        create_detector("blazeface")
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(ImportError, match=r"pip install dlib-bin .* or use --detector blazeface"):
        create_detector("dlib")


def test_missing_detector_dependency_stops_the_command_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    from pfld.cli.predict import main

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    out = tmp_path / "out"
    assert main([str(PHOTOS / "1204062305.jpg"), "--model", str(MODEL), "--out", str(out)]) == 2
    assert "pip install ai-edge-litert" in capsys.readouterr().err and not out.exists()
    assert main([str(PHOTOS / "1204062305.jpg"), "--model", str(MODEL), "--detect-every", "0"]) == 2
    assert "--detect-every must be >= 1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def predictor(blazeface):
    pytest.importorskip("onnxruntime")
    from pfld.predict import Predictor, load_landmark_model

    return Predictor(load_landmark_model(MODEL), blazeface)


def moving_clip(frames: int = 12) -> tuple[list[np.ndarray], np.ndarray]:
    """A face drifting 3 px a frame to the right and 1 px down, with its (68, 2) landmarks per frame."""
    image = read_image(PHOTOS / "1204062305.jpg")
    truth = read_pts(PHOTOS / "1204062305_1.pts", 68)
    clip = [np.roll(image, (i, 3 * i), axis=(0, 1)) for i in range(frames)]
    return clip, np.stack([truth + [3 * i, i] for i in range(frames)])


def test_tracker_detects_every_nth_frame_and_follows_the_face_between(predictor) -> None:
    from pfld.predict import FaceTracker, Predictor

    clip, truth = moving_clip()
    errors = {}
    # one face: the rolled frames' seams give BlazeFace a few false faces, which would be followed too
    one_face = Predictor(predictor.model, predictor.detector, max_faces=1)
    for every in (1, 5):
        tracker = FaceTracker(one_face, detect_every=every)
        faces = [tracker(frame)[0] for frame in clip]
        assert tracker.detections == (12 if every == 1 else 3)  # frames 0, 5 and 10
        points = torch.from_numpy(np.stack([f.landmarks for f in faces]))
        errors[every] = nme(points, torch.from_numpy(truth).float(), (36, 45)).numpy()
        assert faces[3].box[0] - faces[0].box[0] == pytest.approx(9, abs=3)  # the box moves with the face
    assert errors[5].max() < 0.08  # the followed face stays on it
    assert abs(errors[5].mean() - errors[1].mean()) < 0.01


def test_tracker_detects_again_when_the_face_is_lost(predictor) -> None:
    from pfld.predict import FaceTracker

    clip, _ = moving_clip(2)
    tracker = FaceTracker(predictor, detect_every=30)
    assert len(tracker(clip[0])) == 1 and tracker.detections == 1
    assert tracker(np.full_like(clip[0], 128)) == []  # the followed crop holds no face: detected afresh
    assert tracker.detections == 2
    assert len(tracker(clip[1])) == 1 and tracker.detections == 3  # nothing to follow: detected
    tracker.reset()
    tracker(clip[1])
    assert tracker.detections == 4
    with pytest.raises(ValueError, match="detect_every must be >= 1"):
        FaceTracker(predictor, detect_every=0)


def test_the_shipped_weights_are_mediapipes_files() -> None:
    """The hashes NOTICE.md states (a Git LFS pointer or a truncated copy would fail here, by name)."""
    import hashlib

    from pfld.predict.blazeface import WEIGHTS

    notice = (WEIGHTS / "NOTICE.md").read_text()
    for config in MODELS.values():
        digest = hashlib.sha256((WEIGHTS / config.file).read_bytes()).hexdigest()
        assert f"| {config.file} | {digest} |" in notice, config.file
