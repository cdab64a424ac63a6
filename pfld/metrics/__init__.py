"""Metrics (no plotting: `pfld.evaluation.figures`). Landmark metrics (`landmarks`): per-face NME, failure rate, CED curve and AUC; head-pose error; torchmetrics wrappers.

Landmarks are ``(N, K, 2)``, x then y, in any one unit shared by prediction and target (the NME is
scale-free). NMEs are fractions of the normalising distance (0.05 = 5 % of the inter-ocular distance).
The normalising distance (`normalizing_distance`) is the distance between two points, the outer eye
corners ("inter_ocular") or the pupils ("inter_pupil"), or the square root of the area of the target's
landmark box ("box", as for COFW and AFLW).

Partially labelled faces: ``mask`` is ``(N, K)`` bool, True where a point is labelled. `nme` averages
over the labelled points and gives NaN for a face it cannot normalise ("unscored": one of the two
normalising points unlabelled; for "box", fewer than two labelled points). NaN policy: `failure_rate`,
`ced_curve`, `auc` (and `pfld.evaluation.figures.plot_ced`) take finite NMEs only and raise otherwise, so that an unscored face is
never silently counted; drop unscored faces first with `scored_nmes`. `NMEMetric` does this itself and
reports how many faces it dropped.

Head pose (`pose`): Euler angles are ``(N, 3)`` yaw, pitch, roll in radians; `pose_errors` gives their wrapped
differences in degrees and `PoseErrorMetric` their mean absolute value over the faces with a valid pose.

The metric classes keep their state in torchmetrics states with a cat / sum reduction, so the values
they compute are over every process of a distributed run.
"""

from pfld.metrics.landmarks import (
    DEFAULT_NORMALIZATION,
    NORMALIZATION_MODES,
    NMEMetric,
    Normalization,
    NormalizationMode,
    auc,
    ced_curve,
    failure_rate,
    group_nmes,
    nme,
    normalized_residuals,
    normalizing_distance,
    paired_difference,
    resolve_normalization,
    scored_nmes,
)
from pfld.metrics.pose import ANGLE_NAMES, PoseErrorMetric, pose_errors

__all__ = [
    "ANGLE_NAMES",
    "DEFAULT_NORMALIZATION",
    "NORMALIZATION_MODES",
    "NMEMetric",
    "Normalization",
    "NormalizationMode",
    "PoseErrorMetric",
    "auc",
    "ced_curve",
    "failure_rate",
    "group_nmes",
    "nme",
    "normalized_residuals",
    "normalizing_distance",
    "paired_difference",
    "pose_errors",
    "resolve_normalization",
    "scored_nmes",
]
