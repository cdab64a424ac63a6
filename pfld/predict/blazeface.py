"""BlazeFace, MediaPipe's face detector (Bazarevsky et al., CVPR Workshops 2019), run with the LiteRT
interpreter (`pip install ai-edge-litert`; the weights ship in `pfld/predict/weights/`, Apache-2.0, see
its NOTICE.md). Unlike dlib's frontal HOG detector it finds turned and tilted faces.

Two models, each on the photo letterboxed into its square input: ``short`` (128 px, for faces of about
a third of the photo and more, which the other misses) and ``full`` (192 px, MediaPipe's sparse "full
range" model: faces down to about a tenth of its input). Faces smaller than that at the whole photo's
scale are found by running ``full`` on overlapping tiles sized for the smallest face wanted
(``min_face``). On the 300W photos of ../shared the three passes miss 1.5 % of AFW's faces and none of
Helen's; the full-range pass alone misses 12 % and 1.6 %.

Decoding follows MediaPipe's SSD anchors and TensorsToDetections calculators: each anchor regresses a
box centre offset and size (in input pixels, relative to the anchor's cell centre) and six keypoints,
scores are sigmoids, and overlapping boxes are merged by score-weighted averaging (MediaPipe's
"weighted" non-maximum suppression).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pfld.predict.box_mapping import BLAZEFACE_MAPPING
from pfld.predict.detector import Detection

WEIGHTS = Path(__file__).resolve().parent / "weights"
#: a tile reports faces up to this fraction of its side; larger ones are the whole photo's pass's
TILE_MAX_FACE = 0.4
#: the full-range model finds faces reliably down to about this fraction of its input's side (measured
#: on AFW: faces of 15 input pixels were missed, 20 found)
FACE_FRACTION = 0.1


@dataclass(frozen=True)
class BlazeFaceModel:
    """One BlazeFace variant: its file, square input side, anchor strides (one feature map per
    stride; two anchors per cell when ``two_per_cell``), MediaPipe's score threshold for it, and the
    smallest box (fraction of the window's side) it answers for in a pass over the whole photo."""

    file: str
    input_size: int
    strides: tuple[int, ...]
    two_per_cell: bool
    min_score: float
    min_relative_size: float = 0.0


MODELS = {
    "full": BlazeFaceModel("face_detection_full_range_sparse.tflite", 192, (4,), False, 0.6),
    # the short-range model is there for faces too large for the full-range one (about a third of the
    # photo and more); on smaller faces it sometimes boxes two neighbours as one face. Its threshold is
    # above MediaPipe's 0.5: on the 300W photos of ../shared, 0.7 finds the same faces with a quarter
    # fewer detections that match no annotated face
    "short": BlazeFaceModel("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 0.7, 0.2),
}


def ssd_anchors(input_size: int, strides: tuple[int, ...], two_per_cell: bool) -> np.ndarray:
    """(A, 2) anchor centres in [0, 1] of the input, in the model's output order (MediaPipe's
    SsdAnchorsCalculator with fixed-size anchors: consecutive layers of one stride share a grid and
    contribute two anchors per cell each when ``two_per_cell``, one otherwise)."""
    centres = []
    layer = 0
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        per_cell = (same - layer) * (2 if two_per_cell else 1)
        cells = input_size // strides[layer]
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        y, x = np.meshgrid(grid, grid, indexing="ij")
        centres.append(np.repeat(np.stack([x.ravel(), y.ravel()], axis=1), per_cell, axis=0))
        layer = same
    return np.concatenate(centres)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: take the best remaining box, merge every remaining
    box overlapping it by more than ``iou`` into their score-weighted mean, keep the best score.
    (N, 4) boxes, (N,) scores -> (M, 4), (M,), best first."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    kept_boxes, kept_scores = [], []
    remaining = np.ones(len(boxes), bool)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    for i in range(len(boxes)):
        if not remaining[i]:
            continue
        low = np.maximum(boxes[i, :2], boxes[:, :2])
        high = np.minimum(boxes[i, 2:], boxes[:, 2:])
        overlap = np.prod(np.clip(high - low, 0, None), axis=1)
        union = areas[i] + areas - overlap
        group = remaining & (overlap > iou * np.maximum(union, 1e-12))
        group[i] = True
        weights = scores[group]
        kept_boxes.append((boxes[group] * weights[:, None]).sum(axis=0) / weights.sum())
        kept_scores.append(scores[i])
        remaining &= ~group
    if not kept_boxes:
        return np.zeros((0, 4)), np.zeros(0)
    return np.stack(kept_boxes), np.array(kept_scores)


def _import_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ImportError(
            f"the BlazeFace detector needs the LiteRT interpreter ({error}); install it with: "
            'pip install ai-edge-litert (or pip install -e ".[predict]"), or use --detector dlib'
        ) from error
    return Interpreter


class BlazeFaceDetector:
    """BlazeFace (see the module's docstring) behind the `FaceDetector` interface: the short-range
    model on the whole photo (faces that fill much of it), the full-range model on the whole photo and,
    for small faces, on overlapping tiles; all boxes merged.

    Args:
        min_face: the smallest face (landmark box side, photo pixels) to look for: the full-range model
            needs a face to span about a tenth of its input, so tiles of ``10 x min_face`` pixels
            cover a photo larger than that (None: the whole photo only, faces down to about a tenth of
            its longer side). Boxes under half this size are dropped.
        models: the variants run on the whole photo; tiles use the last one.
        min_score: detections scoring below this are dropped (default: 0.7 for short range, 0.6 for
            full range, MediaPipe's).
        iou: overlap above which two boxes are one face.
        threads: CPU threads of each interpreter.
    """

    name = "blazeface"
    mapping = BLAZEFACE_MAPPING

    def __init__(
        self,
        min_face: float | None = 24.0,
        models: tuple[str, ...] = ("short", "full"),
        min_score: float | None = None,
        iou: float = 0.3,
        threads: int = 1,
    ) -> None:
        if not models or any(m not in MODELS for m in models):
            raise ValueError(f"unknown BlazeFace models {models}; choose from {sorted(MODELS)}")
        if min_face is not None and min_face <= 0:
            raise ValueError(f"min_face must be > 0 pixels, got {min_face}")
        self.runners = [_Runner(MODELS[m], threads, min_score) for m in models]
        self.min_face, self.iou = min_face, iou
        self.name = "blazeface-" + "+".join(models) + (f" (faces from {min_face:g} px)" if min_face else "")

    def __call__(self, image: np.ndarray) -> list[Detection]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        found = [runner(image, 0, 0, max(image.shape[:2]), whole=True) for runner in self.runners]
        found += [self.runners[-1](image, x, y, side, whole=False) for x, y, side in self.tiles(image.shape)]
        boxes, scores = weighted_nms(
            np.concatenate([b for b, _ in found]), np.concatenate([s for _, s in found]), self.iou
        )
        smallest = self.min_face / 2 if self.min_face else 0.0
        return [
            Detection(box, float(score))
            for box, score in zip(boxes, scores, strict=True)
            if max(box[2] - box[0], box[3] - box[1]) >= smallest
        ]

    def tiles(self, shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
        """(x, y, side) of the square tiles for a photo of this (H, W, ...) shape: side ``10 x
        min_face``, overlapping by `TILE_MAX_FACE` of it so that every face a tile answers for lies
        wholly inside one; none when the photo is no larger than one tile."""
        if self.min_face is None:
            return []
        height, width = shape[:2]
        side = round(self.min_face / FACE_FRACTION)
        if max(height, width) <= side:
            return []
        step = side * (1 - TILE_MAX_FACE)

        def starts(length: int) -> np.ndarray:
            count = max(1, int(np.ceil((length - side) / step)) + 1)
            return np.linspace(0, max(length - side, 0), count).round().astype(int)

        return [(int(x), int(y), side) for y in starts(height) for x in starts(width)]


class _Runner:
    """One BlazeFace variant's interpreter, anchors and decoding."""

    def __init__(self, config: BlazeFaceModel, threads: int, min_score: float | None) -> None:
        path = WEIGHTS / config.file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the BlazeFace weights are missing from this install")
        self.config = config
        self.interpreter = _import_interpreter()(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = {o["shape"][-1]: o["index"] for o in self.interpreter.get_output_details()}
        self._regressors, self._scores = outputs[16], outputs[1]
        self.anchors = ssd_anchors(config.input_size, config.strides, config.two_per_cell)
        self.min_score = config.min_score if min_score is None else min_score

    def __call__(
        self, image: np.ndarray, x: int, y: int, side: int, whole: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ((N, 4) photo pixels) and scores in the square window at (x, y) of this side, padded
        with black where it leaves the photo. A tile (not ``whole``) answers only for faces small
        enough that the whole photo's pass may miss them and wholly inside it."""
        size = self.config.input_size
        crop = image[y : y + side, x : x + side]
        square = np.zeros((side, side, 3), np.uint8)
        square[: crop.shape[0], : crop.shape[1]] = crop
        resized = cv2.resize(
            square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        )
        self.interpreter.set_tensor(self._input, (resized.astype(np.float32) / 127.5 - 1.0)[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._regressors)[0]  # (A, 16) in input pixels
        logits = self.interpreter.get_tensor(self._scores)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
        keep = scores >= self.min_score
        raw, scores = raw[keep], scores[keep]
        centre = self.anchors[keep] + raw[:, :2] / size
        half = np.abs(raw[:, 2:4]) / size / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)  # in [0, 1] of the window
        sides = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
        if whole:
            keep = sides >= self.config.min_relative_size
        else:
            keep = (
                (boxes[:, :2] >= 0).all(axis=1) & (boxes[:, 2:] <= 1).all(axis=1) & (sides <= TILE_MAX_FACE)
            )
        boxes, scores = boxes[keep], scores[keep]
        return (boxes * side + [x, y, x, y]).astype(np.float64), scores.astype(np.float64)
