"""`Predictor`: photo -> faces (detector) -> training crops -> model -> landmarks in photo pixels and pose."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pfld.data.attributes import fit_angles
from pfld.data.crop import from_unit, landmark_box, square_box, square_from_box
from pfld.data.schemes import LandmarkScheme, available_schemes, load_scheme
from pfld.inference.crops import refined_landmarks
from pfld.inference.models import LandmarkModel
from pfld.predict.box_mapping import DLIB_HOG_MAPPING, BoxMapping
from pfld.predict.detector import Detection, FaceDetector
from pfld.predict.pose_regressor import PoseRegressor

ANGLE_NAMES = ("yaw", "pitch", "roll")


@dataclass
class FacePrediction:
    """One face: the detector's ``box`` and ``score``, the ``crop`` (centre_x, centre_y, side) the model
    saw last, ``landmarks`` (K, 2) in 0-based photo pixels, and ``pose`` (3,) yaw, pitch, roll in
    radians (None when unknown; `pose_deg` for people) with where it came from: the model's pose output
    or a fit to the predicted landmarks."""

    box: np.ndarray
    score: float
    crop: np.ndarray
    landmarks: np.ndarray
    pose: np.ndarray | None = None
    pose_source: str | None = None
    #: mean move of the points in the last refinement pass, in crop sides (None without refinement):
    #: small when the crop holds a face the model agrees with itself on, large when it lost the face
    refine_shift: float | None = None

    @property
    def pose_deg(self) -> np.ndarray | None:
        """(3,) yaw, pitch, roll in degrees, or None when the pose is unknown (or not finite)."""
        if self.pose is None or not np.isfinite(self.pose).all():
            return None
        return np.rad2deg(self.pose)

    def to_json(self) -> dict[str, Any]:
        degrees = self.pose_deg
        pose = None
        if degrees is not None:
            pose = {name: round(float(v), 2) for name, v in zip(ANGLE_NAMES, degrees, strict=True)}
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(self.score, 4),
            "crop": {
                "centre_x": round(float(self.crop[0]), 2),
                "centre_y": round(float(self.crop[1]), 2),
                "side": round(float(self.crop[2]), 2),
            },
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "pose_deg": pose,
            "pose_source": self.pose_source if pose else None,
        }


class Predictor:
    """Landmarks (and head pose) of every face in a photo, cropped exactly as in training.

    Args:
        model: a `LandmarkModel` (`load_landmark_model(path)`).
        detector: finds faces; not needed when boxes are given to `predict`.
        mapping: detector box -> landmark box (see `pfld.predict.box_mapping`); by default the one
            fitted for ``detector`` (its ``mapping``), or dlib HOG's for boxes given without a detector.
        refine: extra passes, each cropping around the previous pass's landmarks with the training
            rule itself (0: the detector's crop only). On AFW with the shared 0.25X model, NME 0.0646
            without, 0.0594 with one and 0.0586 with two for BlazeFace's boxes (landmark-box crops of
            the same faces: 0.0563); 0.0673, 0.0576, 0.0559 for dlib's (0.0533).
        max_faces: keep at most this many detections (the highest scoring).
        pose_from_landmarks: when the model has no pose output, fit yaw, pitch, roll to the predicted
            landmarks (as training's ground truth is made), if the scheme has pose reference points.
        pose_regressor: when the model has no pose output, a `PoseRegressor` for its scheme gives the
            pose from the predicted landmarks instead of the fit (4x faster, and on AFW as close to the
            annotation's angles; see `scripts/pose_from_landmarks.py`).
    """

    def __init__(
        self,
        model: LandmarkModel,
        detector: FaceDetector | None = None,
        mapping: BoxMapping | None = None,
        refine: int = 2,
        max_faces: int | None = None,
        pose_from_landmarks: bool = True,
        pose_regressor: PoseRegressor | None = None,
    ) -> None:
        if refine < 0:
            raise ValueError(f"refine must be >= 0, got {refine}")
        if mapping is None:
            mapping = getattr(detector, "mapping", DLIB_HOG_MAPPING)
        self.model, self.detector, self.mapping = model, detector, mapping
        self.refine, self.max_faces = refine, max_faces
        if pose_regressor is not None and pose_regressor.num_points != model.spec.num_points:
            raise ValueError(
                f"the pose regressor takes {pose_regressor.num_points} points ({pose_regressor.scheme}); "
                f"the model gives {model.spec.num_points} ({model.spec.scheme})"
            )
        self.pose_regressor = pose_regressor
        self.scheme: LandmarkScheme | None = None
        if pose_from_landmarks and not model.has_pose and model.spec.scheme in available_schemes():
            scheme = load_scheme(model.spec.scheme)
            self.scheme = scheme if scheme.has_pose else None

    def detect(self, image: np.ndarray) -> list[Detection]:
        if self.detector is None:
            raise ValueError("this Predictor has no detector: pass the face boxes to predict()")
        detections = self.detector(image)
        return detections[: self.max_faces] if self.max_faces else detections

    def predict(self, image: np.ndarray, boxes: Sequence[np.ndarray] | None = None) -> list[FacePrediction]:
        """All faces of an (H, W, 3) uint8 RGB photo; with ``boxes`` ((4,) detector-style boxes) instead
        of detection. No face: an empty list."""
        check_image(image)
        detections = (
            self.detect(image) if boxes is None else [Detection(np.asarray(b, float), 1.0) for b in boxes]
        )
        if not detections:
            return []
        crop_scale = self.model.spec.crop_scale
        squares = np.stack(
            [square_from_box(self.mapping.landmark_box(d.box), crop_scale) for d in detections]
        )
        return self._faces(image, squares, self.refine, [(d.box, d.score) for d in detections])

    def follow(
        self, image: np.ndarray, previous: Sequence[FacePrediction], refine: int = 1
    ) -> list[FacePrediction]:
        """The faces of ``previous`` (the last frame's predictions) in this frame, without detection:
        each is cropped around its previous landmarks with the training rule, then ``refine`` more
        passes around the new ones (see `FaceTracker`). Box and score stay those of the detection."""
        check_image(image)
        if not previous:
            return []
        crop_scale = self.model.spec.crop_scale
        squares = np.stack([square_box(f.landmarks.astype(np.float32), crop_scale) for f in previous])
        faces = self._faces(image, squares, refine, [(f.box, f.score) for f in previous])
        height, width = image.shape[:2]
        kept = []
        for before, face in zip(previous, faces, strict=True):
            centre = face.landmarks.mean(axis=0)
            if not (0 <= centre[0] < width and 0 <= centre[1] < height):
                continue  # the face left the frame
            # the detection's box moves and scales with the landmarks' box
            old, new = landmark_box(before.landmarks), landmark_box(face.landmarks)
            scale = (new[2:] - new[:2]).max() / max((old[2:] - old[:2]).max(), 1e-6)
            old_centre, new_centre = (old[:2] + old[2:]) / 2, (new[:2] + new[2:]) / 2
            face.box = np.concatenate([(face.box[:2] - old_centre) * scale + new_centre,
                                       (face.box[2:] - old_centre) * scale + new_centre])  # fmt: skip
            kept.append(face)
        return kept

    def _faces(
        self, image: np.ndarray, squares: np.ndarray, refine: int, boxes: list[tuple[np.ndarray, float]]
    ) -> list[FacePrediction]:
        """Run the model on these (N, 3) crops, ``refine`` more passes, and make the predictions."""
        spec = self.model.spec
        points, units, pose, squares, shifts = refined_landmarks(self.model, image, squares, refine)
        faces = []
        for i, ((box, score), square, face_points) in enumerate(zip(boxes, squares, points, strict=True)):
            shift = None if shifts is None else float(shifts[i])
            face = FacePrediction(box, score, square, face_points, refine_shift=shift)
            if pose is not None:
                face.pose, face.pose_source = pose[i], "model"
            elif self.pose_regressor is not None:
                face.pose, face.pose_source = self.pose_regressor(units[i]), "regressor"
            elif self.scheme is not None:
                crop_points = from_unit(units[i], spec.input_size)
                fitted = fit_angles(crop_points, self.scheme, float(spec.input_size))  # radians
                face.pose, face.pose_source = fitted, "landmarks"
            faces.append(face)
        return faces


def check_image(image: np.ndarray) -> None:
    """Refuse anything but a non-empty (H, W, 3) uint8 RGB array."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB image, got {shape} {getattr(image, 'dtype', type(image))}"
        )
    if min(image.shape[:2]) < 2:
        raise ValueError(f"the image is {image.shape[1]}x{image.shape[0]} pixels: too small to hold a face")
