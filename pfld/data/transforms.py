"""Augmentation of face crops: one affine warp per sample, one colour matrix, then albumentations.

Inputs are the loose crops of `pfld.data.cache` (the policy crop enlarged by a margin, so rotations
and shifts do not bring black corners in) and their (K, 2) points in its pixels (NaN = unlabelled).
Outputs are ``input_size`` squares showing the policy crop, as uint8 RGB (normalisation happens on the
batch, see `pfld.data.normalize`), with the points in the output's pixels. Points are kept even when
augmentation moves them outside the crop.

Training (`FaceAugmentation`): rotation, scale, shift and the horizontal flip are composed into one
(2, 3) matrix and applied with a single ``cv2.warpAffine`` from the loose crop straight to the output
size (the old pipeline warped, flipped and centre-cropped in three passes through albumentations).
With ``yaw_deg`` the face is also turned out of the image plane: the crop is treated as a flat face
seen by the crop's pinhole camera (`pfld.data.geometry`) and rotated about its vertical axis
(`yaw_homography`), so one side recedes and shrinks as on a turned head; the affine map and that
homography go into one ``cv2.warpPerspective``.
The flip renumbers the points: after it, point i takes the mirrored position of point
``flip_permutation[i]`` (the subject's right eye becomes the left one). Each sample reports its in-plane
rotation, whether it was flipped and its out-of-plane turn: the face's Euler angles are updated for
the rotation and flip rather than fitted again (see `pfld.data.attributes.augmented_angles`), and
fitted again after a turn (`pfld.data.dataset.LandmarkDataset`). The colour jitter is one 3x4 colour matrix
(`ColorJitter`); grey, blur and occlusion come from albumentations, drawn with the same random generator.

Evaluation (`CentreCrop`): the policy crop alone, cut out of the loose crop without resampling.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import albumentations as A
import cv2
import numpy as np

from pfld.data.geometry import camera_matrix


@dataclass(frozen=True)
class Augmented:
    """One transformed face.

    image: (S, S, 3) uint8 RGB; points: (K, 2) float32 pixels of ``image`` (NaN = unlabelled);
    rotation_deg: in-plane rotation applied before any flip, counter-clockwise as the viewer sees it;
    flipped: whether the crop was mirrored left-right (and the points renumbered);
    yaw_deg: the turn of the flat face about its vertical axis after both (`yaw_homography`; positive
    turns the nose toward the image's right, as a positive yaw does).
    """

    image: np.ndarray
    points: np.ndarray
    rotation_deg: float = 0.0
    flipped: bool = False
    yaw_deg: float = 0.0


class FaceTransform(Protocol):
    """What `pfld.data.dataset.LandmarkDataset` calls: a loose crop and its points -> `Augmented`."""

    def __call__(self, image: np.ndarray, points: np.ndarray) -> Augmented: ...

    def set_random_seed(self, seed: int) -> None: ...


def flip_points(points: np.ndarray, width: int, flip_permutation: Sequence[int] | np.ndarray) -> np.ndarray:
    """Mirror (K, 2) pixel coordinates of an image ``width`` pixels wide about its vertical centre line
    and renumber them: point i takes the mirrored position of ``flip_permutation[i]``."""
    permutation = np.asarray(flip_permutation, dtype=np.int64)
    if len(points) != len(permutation):
        raise ValueError(f"flip permutation is for {len(permutation)} points, got {len(points)}")
    mirrored = np.array(points, dtype=np.float32, copy=True)
    mirrored[:, 0] = (width - 1) - mirrored[:, 0]
    return mirrored[permutation]


def augmentation_matrix(
    loose_side: int,
    output_size: int,
    rotation_deg: float = 0.0,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    flipped: bool = False,
) -> np.ndarray:
    """(2, 3) float64 map from the loose crop's pixels to the output's: rotate by ``rotation_deg``
    (counter-clockwise as seen) and scale about the loose crop's centre, move that centre to the
    output's centre plus ``shift`` (output pixels), then mirror left-right if ``flipped``.

    With no rotation, scale 1, no shift and no flip it is the centre crop (a pure translation by the
    border), so the policy crop lands exactly on the output (pixel centres on integers, see
    `pfld.data.crop`).
    """
    centre_in = (loose_side - 1) / 2.0
    centre_out = (output_size - 1) / 2.0
    angle = math.radians(rotation_deg)
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    # y points down the image: this is cv2.getRotationMatrix2D's counter-clockwise rotation
    x0 = centre_out + shift[0] - (cos + sin) * centre_in
    y0 = centre_out + shift[1] - (cos - sin) * centre_in
    if flipped:  # x -> (output_size - 1) - x
        return np.array([[-cos, -sin, output_size - 1 - x0], [-sin, cos, y0]])
    return np.array([[cos, sin, x0], [-sin, cos, y0]])


def yaw_homography(output_size: int, yaw_deg: float) -> np.ndarray:
    """(3, 3) float64 map of the output's pixels that turns a flat face by ``yaw_deg`` about its vertical
    axis through the crop's centre, under the crop's camera (focal length ``output_size``, principal
    point at the centre, `pfld.data.geometry.camera_matrix`).

    A point ``x`` pixels right of the centre is, on a plane facing the camera, at ``X = x d / f``; the
    turn sends it to depth ``d + X sin(yaw)``, so it lands at ``x cos(yaw) / (1 + x sin(yaw) / f)`` and
    its height is divided by the same factor: positive yaw pushes the image's right side away (the
    nose, were the face not flat, moves right), as `pfld.data.geometry`'s yaw does. A flat face has no
    depth, so nothing is hidden and the nose does not swing out: a foreshortening of the face, not a
    profile.
    """
    angle = math.radians(yaw_deg)
    camera = camera_matrix(output_size)
    turn = np.array([[math.cos(angle), 0.0, 0.0], [0.0, 1.0, 0.0], [math.sin(angle), 0.0, 1.0]])  # x / f
    return camera @ turn @ np.linalg.inv(camera)


def _apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(3, 3) projective map applied to (K, 2) points; NaN stays NaN."""
    moved = points.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return (moved[:, :2] / moved[:, 2:]).astype(np.float32)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(2, 3) affine map applied to (K, 2) points; NaN stays NaN."""
    return (points @ matrix[:, :2].T.astype(np.float32) + matrix[:, 2].astype(np.float32)).astype(np.float32)


#: Rec. 601 luma weights of R, G, B (what torchvision's and albumentations' colour jitter use for grey).
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
LUMA = np.array(LUMA_WEIGHTS)


def color_matrix(
    brightness: float, contrast: float, saturation: float, hue: float, mean_grey: float
) -> np.ndarray:
    """(3, 4) affine map of RGB values: torchvision's colour jitter (brightness, then contrast, then
    saturation, then hue) composed into one matrix, applied to a crop with one ``cv2.transform``.

    brightness, contrast, saturation: factors (1 = unchanged); hue: a turn of the colour wheel in
    [-0.5, 0.5], here a rotation about the grey axis of RGB (the usual linear approximation of an HSV
    hue shift; greys stay grey); mean_grey: the crop's mean luma, which contrast blends towards.
    """
    angle = 2.0 * math.pi * hue
    cos, sin = math.cos(angle), math.sin(angle) / math.sqrt(3.0)
    # hue: cos I + (1 - cos) / 3 (all ones) + sin / sqrt(3) [[0, -1, 1], [1, 0, -1], [-1, 1, 0]];
    # saturation: s I + (1 - s) (each row the luma weights); hue keeps greys, so hue @ saturation is
    # s * hue + (1 - s) * (each row the luma weights)
    same, plus, minus = cos + (1.0 - cos) / 3.0, (1.0 - cos) / 3.0 + sin, (1.0 - cos) / 3.0 - sin
    hue_rows = ((same, minus, plus), (plus, same, minus), (minus, plus, same))
    gain = contrast * brightness
    # contrast pulls towards the mean grey; saturation and hue keep a grey value grey
    offset = (1.0 - contrast) * brightness * mean_grey
    return np.array(
        [
            [gain * (saturation * h + (1.0 - saturation) * w) for h, w in zip(row, LUMA_WEIGHTS)] + [offset]
            for row in hue_rows
        ]
    )


class ColorJitter:
    """Random brightness, contrast and saturation factors in [1 - x, 1 + x] and a hue turn in [-h, h],
    as albumentations' ``ColorJitter`` (0.3, 0.3, 0.3, 0.05) draws them, applied in one pass
    (`color_matrix`): 68 us for a 112 px crop here, where albumentations' four passes with two HSV
    conversions took 469 us, the largest single cost of a sample."""

    def __init__(
        self, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3, hue: float = 0.05
    ):
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(4).tolist()
        b, c, s = (
            max(0.0, 1.0 - x) + (1.0 + x - max(0.0, 1.0 - x)) * v
            for x, v in zip((self.brightness, self.contrast, self.saturation), u)
        )
        h = self.hue * (2.0 * u[3] - 1.0)
        red, green, blue = cv2.mean(image)[:3]
        mean_grey = LUMA_WEIGHTS[0] * red + LUMA_WEIGHTS[1] * green + LUMA_WEIGHTS[2] * blue
        return cv2.transform(image, color_matrix(b, c, s, h, mean_grey))


class FaceAugmentation:
    """Training augmentation (see the module doc); probabilities 0 turn a step off. The defaults are
    `conf/data/augmentation/light.yaml`'s.

    Args:
        input_size: side of the output in pixels (the policy crop's side in the loose crop).
        flip_permutation: the scheme's (K,) flip permutation.
        rotate_deg: rotation drawn uniformly from [-rotate_deg, rotate_deg].
        scale: (low, high) zoom drawn uniformly.
        shift: the crop's centre moves by up to this fraction of the output's side, in x and y.
        flip: probability of the mirror (with the point swap).
        color: probability of brightness, contrast, saturation (0.3 each) and hue (0.05) jitter.
        grayscale: probability of turning the crop grey.
        blur: probability of a Gaussian (3-5 px) or motion (3-7 px) blur.
        occlusion: probability of one or two random-noise boxes of 10-35 % of the side on the face.
        yaw_deg: out-of-plane turn of the flat face drawn uniformly from [-yaw_deg, yaw_deg]
            (`yaw_homography`); 0 (the default) leaves the warp affine and the random draws as before.
    """

    def __init__(
        self,
        input_size: int,
        flip_permutation: Sequence[int] | np.ndarray,
        rotate_deg: float = 15.0,
        scale: Sequence[float] = (0.9, 1.1),
        shift: float = 0.05,
        flip: float = 0.5,
        color: float = 0.5,
        blur: float = 0.2,
        occlusion: float = 0.1,
        grayscale: float = 0.05,
        yaw_deg: float = 0.0,
    ) -> None:
        if not 0.0 <= yaw_deg < 90.0:
            raise ValueError(f"augmentation.yaw_deg is a turn in degrees in [0, 90), got {yaw_deg}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"augmentation.scale must be (low, high) with 0 < low <= high, got {scale}")
        for name, p in {
            "flip": flip,
            "color": color,
            "blur": blur,
            "occlusion": occlusion,
            "grayscale": grayscale,
        }.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"augmentation.{name} is a probability in [0, 1], got {p}")
        self.input_size = int(input_size)
        self.flip_permutation = np.asarray(flip_permutation, dtype=np.int64)
        self.rotate_deg, self.scale, self.shift = (
            float(rotate_deg),
            (float(scale[0]), float(scale[1])),
            float(shift),
        )
        self.flip = float(flip)
        self.yaw_deg = float(yaw_deg)
        self.color, self.color_jitter = float(color), ColorJitter()
        # albumentations steps, applied with p=1 when our own draw says so: no Compose, no keypoint
        # bookkeeping (none of them moves a point), one random generator for everything
        self.photometric: list[tuple[float, A.BasicTransform | A.BaseCompose]] = [
            (grayscale, A.ToGray(p=1.0)),
            (blur, A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=1.0)),
            (
                occlusion,
                A.CoarseDropout(
                    num_holes_range=(1, 2),
                    hole_height_range=(0.1, 0.35),
                    hole_width_range=(0.1, 0.35),
                    fill="random_uniform",
                    p=1.0,
                ),
            ),
        ]
        self.set_random_seed(0)

    def set_random_seed(self, seed: int) -> None:
        """Seed the geometric draws and every photometric step (one generator shared by all)."""
        self.rng = np.random.default_rng(seed)
        py_random = random.Random(seed)
        for _, step in self.photometric:
            step.set_random_state(self.rng, py_random)

    def __call__(self, image: np.ndarray, points: np.ndarray) -> Augmented:
        """(L, L, 3) uint8 loose crop, (K, 2) its pixels -> the augmented ``input_size`` crop."""
        rng = self.rng
        u = rng.random(9).tolist()  # one draw: 5 geometric numbers, then whether each photometric step runs
        rotation = self.rotate_deg * (2.0 * u[0] - 1.0)
        zoom = self.scale[0] + (self.scale[1] - self.scale[0]) * u[1]
        reach = self.shift * self.input_size
        shift = (reach * (2.0 * u[2] - 1.0), reach * (2.0 * u[3] - 1.0))
        flipped = u[4] < self.flip
        matrix = augmentation_matrix(image.shape[1], self.input_size, rotation, zoom, shift, flipped)
        size, warp = (self.input_size, self.input_size), {"flags": cv2.INTER_LINEAR, "borderValue": 0}
        yaw = 0.0
        if self.yaw_deg > 0:  # drawn after the others, so yaw_deg=0 keeps every other draw as it was
            yaw = self.yaw_deg * (2.0 * rng.random() - 1.0)
            matrix = yaw_homography(self.input_size, yaw) @ np.vstack([matrix, [0.0, 0.0, 1.0]])
            out = cv2.warpPerspective(np.ascontiguousarray(image), matrix, size, **warp)
            moved = _apply_homography(matrix, np.asarray(points, dtype=np.float32))
        else:
            out = cv2.warpAffine(np.ascontiguousarray(image), matrix, size, **warp)
            moved = _apply(matrix, np.asarray(points, dtype=np.float32))
        if flipped:
            if len(moved) != len(self.flip_permutation):
                raise ValueError(
                    f"flip permutation is for {len(self.flip_permutation)} points, got {len(moved)}"
                )
            moved = moved[self.flip_permutation]
        if u[5] < self.color:
            out = self.color_jitter(out, rng)
        for draw, (probability, step) in zip(u[6:], self.photometric, strict=True):
            if draw < probability:
                out = step(image=out)["image"]
        return Augmented(out, moved, rotation, flipped, yaw)


class CentreCrop:
    """Evaluation: the policy crop (``input_size`` pixels) cut out of the centre of the loose crop."""

    def __init__(self, input_size: int) -> None:
        self.input_size = int(input_size)

    def set_random_seed(self, seed: int) -> None:
        """Nothing is random here."""

    def __call__(self, image: np.ndarray, points: np.ndarray) -> Augmented:
        side = image.shape[0]
        border, odd = divmod(side - self.input_size, 2)
        if border < 0 or odd or image.shape[1] != side:
            raise ValueError(
                f"a {image.shape[1]}x{side} crop has no centred {self.input_size}-pixel policy crop "
                "(the loose crop must be square and larger by an even number of pixels)"
            )
        crop = image[border : border + self.input_size, border : border + self.input_size]
        return Augmented(np.ascontiguousarray(crop), np.asarray(points, dtype=np.float32) - border)


def build_train_transform(
    input_size: int, flip_permutation: Sequence[int] | np.ndarray, **augmentation: float | Sequence[float]
) -> FaceAugmentation:
    """The training augmentation; ``augmentation`` holds `FaceAugmentation`'s keyword arguments (the
    ``data.augmentation`` config)."""
    known = [
        name
        for name in inspect.signature(FaceAugmentation).parameters
        if name not in {"input_size", "flip_permutation"}
    ]
    unknown = sorted(set(augmentation) - set(known))
    if unknown:
        raise ValueError(f"unknown data.augmentation keys {unknown}; known: {', '.join(known)}")
    return FaceAugmentation(input_size, flip_permutation, **augmentation)  # type: ignore[arg-type]


def build_eval_transform(input_size: int) -> CentreCrop:
    """The policy crop alone (no augmentation)."""
    return CentreCrop(input_size)
