"""Temporal smoothing of landmarks in a video: the One Euro filter (Casiez, Roussel and Vogel, CHI 2012)
per face track. Off by default (`--smooth`).

The filter is an exponential low-pass filter whose cutoff frequency rises with the signal's speed:

    cutoff = min_cutoff + beta * |smoothed speed|,   alpha = 1 / (1 + fps / (2 pi cutoff))

so a still face gets a low cutoff (jitter removed) and a moving face a high one (little lag). Points
are filtered in units of the face's crop side, so the settings do not depend on the face's size in
pixels: ``min_cutoff`` in Hz, ``beta`` in 1 / (crop sides per second). Faces are matched to tracks from
frame to frame by the overlap of their crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pfld.predict.detector import box_iou
from pfld.predict.pipeline import FacePrediction


def _alpha(cutoff: float | np.ndarray, rate: float) -> float | np.ndarray:
    """Smoothing factor of an exponential filter with this cutoff (Hz) at this sampling rate (Hz)."""
    return 1.0 / (1.0 + rate / (2 * math.pi * cutoff))


@dataclass
class OneEuroFilter:
    """One Euro filter over arrays of any fixed shape, sampled at ``rate`` Hz (the video's fps)."""

    rate: float
    min_cutoff: float = 1.0
    beta: float = 5.0
    derivative_cutoff: float = 1.0
    _value: np.ndarray | None = field(default=None, init=False, repr=False)
    _speed: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.min_cutoff > 0 and self.beta >= 0 and self.derivative_cutoff > 0):
            raise ValueError(f"need rate, min_cutoff, derivative_cutoff > 0 and beta >= 0: {self}")

    def __call__(self, value: np.ndarray) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if self._value is None:
            self._value, self._speed = value, np.zeros_like(value)
            return value
        speed = (value - self._value) * self.rate
        self._speed = self._speed + _alpha(self.derivative_cutoff, self.rate) * (speed - self._speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self._speed)
        self._value = self._value + _alpha(cutoff, self.rate) * (value - self._value)
        return self._value


def crop_overlap(first: np.ndarray, second: np.ndarray) -> float:
    """IoU of two crops given as (centre_x, centre_y, side) squares."""
    return box_iou(*(np.concatenate([s[:2] - s[2] / 2, s[:2] + s[2] / 2]) for s in (first, second)))


class LandmarkSmoother:
    """Smooths the faces of consecutive frames: each face continues the track whose last crop it
    overlaps most (IoU >= ``min_overlap``); other faces start new tracks; unmatched tracks end."""

    def __init__(
        self, rate: float, min_cutoff: float = 1.0, beta: float = 5.0, min_overlap: float = 0.3
    ) -> None:
        self.settings = {"rate": rate, "min_cutoff": min_cutoff, "beta": beta}
        OneEuroFilter(**self.settings)  # validates the settings now
        self.min_overlap = min_overlap
        self.tracks: list[tuple[np.ndarray, OneEuroFilter]] = []  # (last crop, filter)

    def __call__(self, faces: list[FacePrediction]) -> list[FacePrediction]:
        """The faces with smoothed landmarks (in place), in the same order."""
        free = list(range(len(self.tracks)))  # indices of the previous frame's tracks not yet taken
        tracks = []
        for face in faces:
            best = max(free, key=lambda i: crop_overlap(self.tracks[i][0], face.crop), default=None)
            if best is not None and crop_overlap(self.tracks[best][0], face.crop) >= self.min_overlap:
                free.remove(best)
                smoother = self.tracks[best][1]
            else:
                smoother = OneEuroFilter(**self.settings)
            side = float(face.crop[2])
            face.landmarks = (smoother(face.landmarks / side) * side).astype(np.float32)
            tracks.append((face.crop, smoother))
        self.tracks = tracks
        return faces
