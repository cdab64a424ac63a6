"""Faces in a video without detecting on every frame: detect every ``detect_every`` frames and, in
between, follow each face from its previous frame's landmarks (`Predictor.follow`: the crop the
training rule makes around them, then ``refine`` passes). Landmark models see the same crop either
way; the detector's cost is paid once per ``detect_every`` frames.

A followed face can be lost (fast motion, occlusion, the face leaving the view). The model has no
face score, but it disagrees with itself on a crop without the face: when the refinement pass moves
the points by more than ``max_shift`` crop sides on average (on moving AFW clips, 99 % of well-followed
faces moved under 0.019, and 26 of the 29 lost ones more than 0.025), the frame is detected afresh.
A frame with no face followed is detected too, so a face that appears alone is found at once; one that
appears while others are followed waits for the next detection.
"""

from __future__ import annotations

import numpy as np

from pfld.predict.pipeline import FacePrediction, Predictor
from pfld.predict.smoothing import crop_overlap


class FaceTracker:
    """Per-frame faces of a video: ``tracker(frame)`` -> list of `FacePrediction`, frame after frame.

    Args:
        predictor: the photo pipeline (its detector, mapping, refinement and model).
        detect_every: run the detector on every n-th frame (1: every frame, as for photos).
        refine: passes around the new landmarks when following (the first crop already comes from
            the previous frame's landmarks).
        max_shift: a followed face whose refinement moves its points by more than this (mean, in crop
            sides) is taken as lost, and the frame is detected (needs ``refine`` >= 1).
        min_overlap: two followed faces whose crops overlap more than this have become one face;
            the second is dropped.
    """

    def __init__(
        self,
        predictor: Predictor,
        detect_every: int = 5,
        refine: int = 1,
        max_shift: float = 0.025,
        min_overlap: float = 0.5,
    ) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1 frame, got {detect_every}")
        if refine < 0:
            raise ValueError(f"refine must be >= 0, got {refine}")
        self.predictor, self.detect_every, self.refine = predictor, detect_every, refine
        self.max_shift, self.min_overlap = max_shift, min_overlap
        self.faces: list[FacePrediction] = []
        self.frames = self.detections = 0

    def __call__(self, frame: np.ndarray) -> list[FacePrediction]:
        faces = None
        if self.frames % self.detect_every and self.faces:
            faces = []
            for face in self.predictor.follow(frame, self.faces, self.refine):
                if all(crop_overlap(face.crop, kept.crop) <= self.min_overlap for kept in faces):
                    faces.append(face)
            if not faces or any((f.refine_shift or 0.0) > self.max_shift for f in faces):
                faces = None  # lost: detect
        if faces is None:
            faces = self.predictor.predict(frame)
            self.detections += 1
        self.frames += 1
        self.faces = faces
        return faces

    def reset(self) -> None:
        """Forget the followed faces (a cut in the video): the next frame is detected."""
        self.faces = []
