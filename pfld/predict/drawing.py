"""Pictures of predictions: the points, the detector's box and the head-pose axes, drawn on the photo."""

from __future__ import annotations

import cv2
import numpy as np

from pfld.data.geometry import rotation_matrix
from pfld.predict.pipeline import FacePrediction

#: BGR-free RGB colours: points, box, and the pose axes (the subject's left, up, forward).
POINT, BOX = (0, 255, 0), (255, 200, 0)
AXES = ((255, 60, 60), (60, 255, 60), (60, 120, 255))


def pose_axes(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 2) image directions of the face's left, up and forward axes (unit length in 3D, orthographic
    projection), from radians as `pfld.data.geometry` defines them (OpenCV camera: x right, y down)."""
    rotation = rotation_matrix(yaw, pitch, roll)  # face frame -> camera
    return np.stack([rotation[:2, 0], -rotation[:2, 1], -rotation[:2, 2]])


def draw_face(image: np.ndarray, face: FacePrediction, thickness: int | None = None) -> np.ndarray:
    """Draw one face on an RGB image in place (and return it)."""
    side = float(face.crop[2])
    thickness = thickness or max(1, round(side / 150))
    radius = max(1, round(side / 110))
    x0, y0, x1, y1 = (round(float(v)) for v in face.box)
    cv2.rectangle(image, (x0, y0), (x1, y1), BOX, thickness)
    for x, y in face.landmarks:
        cv2.circle(image, (round(float(x)), round(float(y))), radius, POINT, -1, cv2.LINE_AA)
    degrees = face.pose_deg  # for the label; the axes take the radians
    if degrees is not None:
        origin = face.landmarks.mean(axis=0)
        for direction, colour in zip(pose_axes(*face.pose), AXES, strict=True):
            tip = origin + direction * side / 3
            cv2.arrowedLine(
                image, tuple(np.round(origin).astype(int)), tuple(np.round(tip).astype(int)), colour,
                thickness + 1, cv2.LINE_AA, tipLength=0.15,
            )  # fmt: skip
        label = " ".join(
            f"{n[0]}{round(float(v)) + 0:+d}" for n, v in zip(("yaw", "pitch", "roll"), degrees, strict=True)
        )
        cv2.putText(image, label, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, max(0.4, side / 600), BOX,
                    thickness, cv2.LINE_AA)  # fmt: skip
    return image


def draw_faces(image: np.ndarray, faces: list[FacePrediction]) -> np.ndarray:
    """A copy of the RGB image with every face drawn."""
    canvas = image.copy()
    for face in faces:
        draw_face(canvas, face)
    return canvas
