"""The photo and video predictor on real AFW photos (tests/data/photos) with a committed 0.25X int8 model
trained on the shared Helen and ytf68 faces (tests/data/models; it never saw AFW), with each face
detector."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from pfld.cli.predict import main
from pfld.data.crop import landmark_box
from pfld.data.readers import read_pts
from pfld.io.images import read_image
from pfld.metrics import nme
from pfld.predict import BoxMapping, Predictor, create_detector, load_landmark_model
from pfld.predict.box_mapping import DLIB_HOG_MAPPING, fit_box_mapping
from pfld.predict.detector import box_iou
from pfld.predict.drawing import draw_faces, pose_axes
from pfld.predict.smoothing import LandmarkSmoother, OneEuroFilter
from tests.conftest import FIXTURES

PHOTOS = FIXTURES / "photos"
MODEL = FIXTURES / "models" / "pfld_025x_300w_int8.onnx"
#: a face turned away and tilted (AFW 3363054468): BlazeFace finds it, dlib's frontal HOG does not
TURNED = PHOTOS / "3363054468.jpg"
FRONTAL = sorted(p for p in PHOTOS.glob("*.jpg") if p != TURNED)
#: the Python package each detector needs
NEEDS = {"blazeface": "ai_edge_litert", "dlib": "dlib"}


def annotated(photo: Path) -> list[np.ndarray]:
    """(68, 2) 0-based landmarks of each annotated face of a photo (`<stem>_<n>.pts` beside it)."""
    return [read_pts(pts, 68) for pts in sorted(PHOTOS.glob(f"{photo.stem}_*.pts"))]


def face_error(face, truth: np.ndarray) -> float:
    return float(nme(torch.from_numpy(face.landmarks[None]), torch.from_numpy(truth[None]), (36, 45)))


def face_error_json(face: dict, truth: np.ndarray) -> float:
    """NME of a face of predict.py's JSON against the annotated points."""
    points = np.array(face["landmarks"], np.float32)
    return float(nme(torch.from_numpy(points[None]), torch.from_numpy(truth[None]), (36, 45)))


@pytest.fixture(scope="module")
def model():
    return load_landmark_model(MODEL)


@pytest.fixture(scope="module", params=sorted(NEEDS))
def any_predictor(request: pytest.FixtureRequest, model) -> Predictor:
    """A predictor with each detector in turn."""
    pytest.importorskip(NEEDS[request.param])
    return Predictor(model, create_detector(request.param))


@pytest.fixture(scope="module")
def predictor(model) -> Predictor:
    """The default detector's predictor."""
    pytest.importorskip(NEEDS["blazeface"])
    return Predictor(model, create_detector())


@pytest.mark.parametrize("photo", FRONTAL + [TURNED], ids=lambda p: p.stem)
def test_every_annotated_face_is_found_and_its_points_land_on_it(
    any_predictor: Predictor, photo: Path
) -> None:
    image = read_image(photo)
    faces = any_predictor.predict(image)
    if photo == TURNED and any_predictor.detector.name == "dlib-hog":
        # why BlazeFace is the default: on all 300W photos of ../shared dlib misses 12.8 % of AFW's
        # faces, mostly turned and tilted ones like this
        (truth,) = annotated(TURNED)
        assert all(box_iou(f.box, landmark_box(truth)) < 0.2 for f in faces)
        return
    for truth in annotated(photo):
        box = landmark_box(truth)
        face = max(faces, key=lambda f: box_iou(f.box, box))
        assert box_iou(face.box, box) > 0.4, f"{photo.name}: the detector missed the face at {box.round()}"
        error = face_error(face, truth)
        # the turned face is hard for this model: 0.0998 even on the training policy's crop of the
        # annotation; 0.128 through BlazeFace's box, mapping and two refinements
        assert error < (0.14 if photo == TURNED else 0.08), f"{photo.name}: NME {error:.3f}"
        assert (
            face.pose_source == "landmarks" and np.isfinite(face.pose).all()
        )  # the model has no pose output
        if photo != TURNED:
            assert (abs(face.pose_deg) < 45).all()  # frontal faces; pose is in radians, pose_deg for people


def test_the_command_finds_a_turned_face_with_the_default_detector(tmp_path: Path) -> None:
    pytest.importorskip(NEEDS["blazeface"])
    assert main([str(TURNED), "--model", str(MODEL), "--out", str(tmp_path), "--no-draw"]) == 0
    (face,) = json.loads((tmp_path / f"{TURNED.stem}.json").read_text())["faces"]
    (truth,) = annotated(TURNED)
    assert face_error_json(face, truth) < 0.14


def test_refinement_brings_the_crop_to_the_training_policy(any_predictor: Predictor) -> None:
    """On the detector's box the crop is a guess; re-cropping around the predicted points with the
    training rule brings them closer to the annotation (dlib on these 6 faces: mean NME 0.0543 ->
    0.0456; on all of AFW 0.0673 -> 0.0559; BlazeFace on AFW 0.0646 -> 0.0586)."""
    errors = {0: [], 2: []}
    for photo in FRONTAL:
        image = read_image(photo)
        for refine, found in errors.items():
            detector = any_predictor.detector
            faces = Predictor(any_predictor.model, detector, refine=refine).predict(image)
            for truth in annotated(photo):
                face = max(faces, key=lambda f: box_iou(f.box, landmark_box(truth)))
                found.append(face_error(face, truth))
    assert len(errors[0]) == 6
    assert np.mean(errors[2]) < 0.95 * np.mean(errors[0])


def test_each_detector_brings_its_own_box_mapping(model) -> None:
    pytest.importorskip(NEEDS["blazeface"])
    blazeface = create_detector("blazeface")
    assert Predictor(model, blazeface).mapping == blazeface.mapping != DLIB_HOG_MAPPING
    assert Predictor(model).mapping == DLIB_HOG_MAPPING  # boxes given without a detector: dlib-style
    assert Predictor(model, blazeface, mapping=BoxMapping()).mapping == BoxMapping()


def test_box_mapping_is_fitted_from_matched_boxes() -> None:
    truth = BoxMapping(dx=0.05, dy=0.1, scale=1.3)
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 300, (20, 2))
    detections = np.concatenate([corners, corners + rng.uniform(40, 120, (20, 1))], axis=1)  # squares
    targets = np.stack([truth.landmark_box(d) for d in detections])
    fitted = fit_box_mapping(detections, targets)
    assert (
        fitted.dx == pytest.approx(0.05)
        and fitted.dy == pytest.approx(0.1)
        and fitted.scale == pytest.approx(1.3)
    )
    np.testing.assert_allclose(BoxMapping().landmark_box(np.array([0, 0, 10, 20])), [-5, 0, 15, 20])
    with pytest.raises(ValueError, match="no area"):
        BoxMapping().landmark_box(np.array([5, 5, 5, 9]))


def test_a_face_cut_by_the_border_is_padded_not_a_crash(predictor: Predictor) -> None:
    image = read_image(PHOTOS / "1204062305.jpg")
    (truth,) = annotated(PHOTOS / "1204062305.jpg")
    left = int(truth[:, 0].mean())  # cut the photo through the middle of the face
    cut = np.ascontiguousarray(image[:, left:])
    box = landmark_box(truth) - [left, 0, left, 0]
    (face,) = predictor.predict(cut, boxes=[box])
    assert face.landmarks.shape == (68, 2) and np.isfinite(face.landmarks).all()
    visible = truth[:, 0] - left >= 0
    error = np.linalg.norm(face.landmarks[visible] - (truth[visible] - [left, 0]), axis=1).mean()
    assert error < 0.25 * np.linalg.norm(truth[36] - truth[45])  # the visible half is still roughly right


def test_no_face_and_tiny_images(
    predictor: Predictor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert predictor.predict(np.full((120, 160, 3), 128, np.uint8)) == []
    with pytest.raises(ValueError, match="too small"):
        predictor.predict(np.zeros((1, 1, 3), np.uint8))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 128, np.uint8))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    code = main(
        [
            str(blank),
            str(corrupt),
            str(PHOTOS / "1204062305.jpg"),
            "--model",
            str(MODEL),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # one input could not be read; the others were still done
    assert "blank.png: no face found" in captured.out and "1204062305.jpg: 1 face" in captured.out
    assert "corrupt.jpg: truncated JPEG" in captured.err  # a JPEG start and no end
    assert json.loads((tmp_path / "out" / "blank.json").read_text())["faces"] == []
    assert main([str(tmp_path / "missing.jpg"), "--model", str(MODEL)]) == 2
    assert "missing.jpg: no such file" in capsys.readouterr().err


def test_command_writes_json_and_a_picture(tmp_path: Path) -> None:
    photo = PHOTOS / "111076519.jpg"
    assert main([str(photo), "--model", str(MODEL), "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "111076519.json").read_text())
    assert record["width"] == 640 and len(record["faces"]) == 2
    face = record["faces"][0]
    assert len(face["landmarks"]) == 68 and set(face["pose_deg"]) == {"yaw", "pitch", "roll"}
    assert face["pose_source"] == "landmarks" and face["crop"]["side"] > 0
    picture = cv2.imread(str(tmp_path / "111076519.jpg"))
    assert picture.shape == (486, 640, 3) and (picture != cv2.imread(str(photo))).any()


@pytest.mark.slow
def test_checkpoint_models_give_pose_from_their_pose_net(tiny_checkpoint: Path) -> None:
    model = load_landmark_model(tiny_checkpoint)
    assert model.has_pose and model.spec.input_size == 112 and model.spec.num_points == 68
    image = read_image(PHOTOS / "1204062305.jpg")
    (truth,) = annotated(PHOTOS / "1204062305.jpg")
    (face,) = Predictor(model, refine=0).predict(image, boxes=[landmark_box(truth)])
    assert face.pose_source == "model" and face.pose.shape == (3,) and np.isfinite(face.pose).all()
    with pytest.raises(ValueError, match=r"\.ckpt checkpoint or an \.onnx"):
        load_landmark_model(PHOTOS / "1204062305.jpg")


def test_one_euro_filter_removes_jitter_and_follows_motion() -> None:
    rng = np.random.default_rng(0)
    still = OneEuroFilter(rate=30, min_cutoff=1.0, beta=5.0)
    noisy = 0.5 + rng.normal(0, 0.01, (90, 4))
    smoothed = np.stack([still(x) for x in noisy])
    assert smoothed[30:].std(axis=0).mean() < noisy.std(axis=0).mean() / 2  # measured: 2.7x less jitter
    moving = OneEuroFilter(rate=30, min_cutoff=1.0, beta=5.0)
    ramp = np.linspace(0, 1, 60)[:, None]  # one crop side per two seconds
    lag = ramp[-1] - np.stack([moving(x) for x in ramp])[-1]
    assert 0 <= lag[0] < 0.05  # under 1/20 of the face behind
    with pytest.raises(ValueError):
        OneEuroFilter(rate=0)


def test_smoother_keeps_each_face_on_its_own_track(predictor: Predictor) -> None:
    image = read_image(PHOTOS / "111076519.jpg")
    faces = predictor.predict(image)
    smoother = LandmarkSmoother(rate=25)
    first = [f.landmarks.copy() for f in smoother(faces)]
    filters = [track[1] for track in smoother.tracks]
    again = smoother(list(reversed(predictor.predict(image))))  # same faces, listed the other way round
    assert [track[1] for track in smoother.tracks] == filters[::-1]  # each face kept its own filter
    np.testing.assert_allclose(again[1].landmarks, first[0], atol=1e-3)
    np.testing.assert_allclose(again[0].landmarks, first[1], atol=1e-3)


def test_video_gives_one_json_line_per_frame(tmp_path: Path) -> None:
    image = cv2.imread(str(PHOTOS / "1204062305.jpg"))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (image.shape[1], image.shape[0])
    )
    for shift in range(6):  # the face drifts right by 2 px a frame
        writer.write(np.roll(image, 2 * shift, axis=1))
    writer.release()
    # one face: the compressed frames hold a hand that BlazeFace scores 0.60 in one frame, at its threshold
    command = [
        str(video),
        "--model",
        str(MODEL),
        "--out",
        str(tmp_path / "out"),
        "--smooth",
        "--max-faces",
        "1",
    ]
    assert main(command) == 0
    lines = (tmp_path / "out" / "clip.jsonl").read_text().splitlines()
    assert len(lines) == 6
    frames = [json.loads(line) for line in lines]
    assert [f["frame"] for f in frames] == list(range(6)) and all(len(f["faces"]) == 1 for f in frames)
    centres = [np.mean(f["faces"][0]["landmarks"], axis=0)[0] for f in frames]
    assert centres[-1] > centres[0]  # the smoothed points follow the face
    assert cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 6


def test_pose_axes_follow_the_angle_conventions() -> None:
    left, up, forward = pose_axes(0, 0, 0)  # radians
    np.testing.assert_allclose([left, up, forward], [[1, 0], [0, -1], [0, 0]], atol=1e-9)
    assert (
        pose_axes(np.radians(30), 0, 0)[2][0] > 0.4
    )  # turned toward the image's right: the nose points right
    assert pose_axes(0, np.radians(20), 0)[2][1] < -0.3  # looking up: it points up
    assert pose_axes(0, 0, np.radians(20))[0][1] > 0.3  # clockwise roll: the left axis tips down
    image = np.zeros((100, 100, 3), np.uint8)
    assert (draw_faces(image, []) == image).all()


def test_without_a_model_the_zoos_small_model_is_used(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The zoo's 0.25X int8 model (with its pose output) on every committed photo: about as accurate
    as the committed test model (mean NME 0.056 each on these 7 faces; a face's error varies by 0.02)."""
    pytest.importorskip(NEEDS["blazeface"])
    photos = FRONTAL + [TURNED]
    assert main([*map(str, photos), "--out", str(tmp_path), "--no-draw"]) == 0
    assert "no --model given: using the zoo's" in capsys.readouterr().out
    errors = []
    for photo in photos:
        faces = json.loads((tmp_path / f"{photo.stem}.json").read_text())["faces"]
        assert all(face["pose_source"] == "model" for face in faces)
        errors += [min(face_error_json(face, truth) for face in faces) for truth in annotated(photo)]
    assert len(errors) == 7 and np.mean(errors) < 0.065 and max(errors) < 0.14
