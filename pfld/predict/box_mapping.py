"""From a face detector's box to the box the training crop policy starts from (the landmarks' box).

A detector's box is not the landmarks' box: dlib's HOG box, for instance, runs from the brows to just
above the chin and is narrower than the jaw. Cropping a detector box with the training rule would give
the model faces at another scale and position than it learned (the usual cause of "it works badly in
practice"). `BoxMapping` moves the box's centre by a fraction of its size and scales it:

    landmark box centre = detector centre + (dx * width, dy * height)
    landmark box side   = scale * max(width, height)

and the crop is then the training one: side ``crop_scale`` x that side, on that centre. The constants
are medians over matched training faces (`fit_box_mapping`); `scripts/measure_detector.py` refits them
on any annotated photos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BoxMapping:
    """Detector box -> landmark box; see the module's docstring. The identity by default; dlib HOG's
    fitted values are `DLIB_HOG_MAPPING`."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0

    def landmark_box(self, box: np.ndarray) -> np.ndarray:
        """(4,) detector x_min, y_min, x_max, y_max -> (4,) the square landmark box it predicts."""
        box = np.asarray(box, dtype=np.float64)
        width, height = box[2] - box[0], box[3] - box[1]
        if not (width > 0 and height > 0):
            raise ValueError(f"the detector box {box.round(1).tolist()} spans no area")
        centre = (box[:2] + box[2:]) / 2 + [self.dx * width, self.dy * height]
        half = self.scale * max(width, height) / 2
        return np.concatenate([centre - half, centre + half])


#: dlib HOG (upsample 1), medians over the 834 of the 870 Helen training faces of ../shared/data that it
#: found (`python scripts/measure_detector.py`): the landmarks' box sits 7.9 % of the detection's height
#: lower than the detection and is 2 % smaller than its longer side.
DLIB_HOG_MAPPING = BoxMapping(dx=0.001, dy=0.079, scale=0.978)

#: BlazeFace (short + full range, tiles for faces from 24 px), medians over the Helen training faces
#: of ../shared/data it found (`python scripts/measure_detector.py`): its box is tighter than dlib's
#: (brows to mouth), so the landmarks' box sits 5.7 % of its height lower and is 4.6 % smaller.
BLAZEFACE_MAPPING = BoxMapping(dx=0.000, dy=0.057, scale=0.954)


def fit_box_mapping(detector_boxes: np.ndarray, landmark_boxes: np.ndarray) -> BoxMapping:
    """The `BoxMapping` of medians over (N, 4) matched detector and landmark boxes (the landmark box's
    longer side and centre, as the crop policy uses them)."""
    detector_boxes, landmark_boxes = np.asarray(detector_boxes, float), np.asarray(landmark_boxes, float)
    if detector_boxes.shape != landmark_boxes.shape or detector_boxes.ndim != 2 or len(detector_boxes) == 0:
        raise ValueError(f"need matched (N, 4) boxes, got {detector_boxes.shape} and {landmark_boxes.shape}")
    size = detector_boxes[:, 2:] - detector_boxes[:, :2]  # (N, 2)
    offset = (landmark_boxes[:, :2] + landmark_boxes[:, 2:]) / 2 - (
        detector_boxes[:, :2] + detector_boxes[:, 2:]
    ) / 2
    landmark_side = (landmark_boxes[:, 2:] - landmark_boxes[:, :2]).max(axis=1)
    return BoxMapping(
        dx=float(np.median(offset[:, 0] / size[:, 0])),
        dy=float(np.median(offset[:, 1] / size[:, 1])),
        scale=float(np.median(landmark_side / size.max(axis=1))),
    )
