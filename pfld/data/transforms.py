"""Augmentation with albumentations 2.x on face crops, with left/right points swapped on a flip.

Inputs are the loose crops of `pfld.data.cache` (the policy crop enlarged by a margin, so rotations
and shifts do not bring black corners in); outputs are ``input_size`` squares showing the policy crop.
Keypoints are kept even when augmentation moves them outside the crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np


class SymmetricHorizontalFlip(A.HorizontalFlip):
    """Horizontal flip that also renumbers the points: after the flip, point i takes the mirrored
    position of point ``flip_permutation[i]`` (the subject's right eye becomes the left one).

    albumentations mirrors coordinates but keeps the order, which would teach a model to put the
    right eye on the left. Needs the keypoints in scheme order, with nothing filtered out.
    """

    def __init__(self, flip_permutation: Sequence[int], p: float = 0.5) -> None:
        super().__init__(p=p)
        self.flip_permutation = np.asarray(flip_permutation, dtype=np.int64)

    def apply_to_keypoints(self, keypoints: np.ndarray, **params: Any) -> np.ndarray:
        mirrored = super().apply_to_keypoints(keypoints, **params)
        if len(mirrored) != len(self.flip_permutation):
            raise ValueError(
                f"flip permutation is for {len(self.flip_permutation)} points, got {len(mirrored)}"
            )
        return mirrored[self.flip_permutation]


def _keypoints() -> A.KeypointParams:
    return A.KeypointParams(format="xy", remove_invisible=False)


def build_train_transform(
    input_size: int,
    margin: float,
    flip_permutation: Sequence[int],
    rotate_deg: float = 30.0,
    scale: tuple[float, float] = (0.9, 1.1),
    shift: float = 0.05,
    flip: float = 0.5,
    color: float = 0.5,
    blur: float = 0.2,
    occlusion: float = 0.3,
    grayscale: float = 0.05,
) -> A.Compose:
    """Affine (rotation, scale, shift as a fraction of the crop), flip with point swap, colour, blur,
    occlusion (cut-out boxes on the face), then the centre crop of ``input_size``. Probabilities 0 turn
    a step off."""
    return A.Compose(
        [
            A.Affine(
                rotate=(-rotate_deg, rotate_deg),
                scale=tuple(scale),
                translate_percent=(-shift / margin, shift / margin),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=1.0 if rotate_deg or shift or tuple(scale) != (1.0, 1.0) else 0.0,
            ),
            SymmetricHorizontalFlip(flip_permutation, p=flip),
            A.CenterCrop(input_size, input_size),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=color),
            A.ToGray(p=grayscale),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=blur),
            A.CoarseDropout(
                num_holes_range=(1, 2),
                hole_height_range=(0.1, 0.35),
                hole_width_range=(0.1, 0.35),
                fill="random_uniform",
                p=occlusion,
            ),
            A.Resize(input_size, input_size),
        ],
        keypoint_params=_keypoints(),
    )


def build_eval_transform(input_size: int) -> A.Compose:
    """The policy crop alone: centre crop of the loose crop, resized to the input size."""
    return A.Compose(
        [A.CenterCrop(input_size, input_size), A.Resize(input_size, input_size)],
        keypoint_params=_keypoints(),
    )
