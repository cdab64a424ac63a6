"""Evaluate a landmark model: predict over a loader, score (NME, FR, AUC, by group and by part of the
face, head pose), draw (CED curve, worst and median faces) and write the report; `evaluate` does it for
a checkpoint.

Modules: `predictions` (any `pfld.inference.LandmarkModel`: PyTorch, onnxruntime, a phone runtime),
`scores`, `figures`, `report` (`score`, and what training and `evaluate.py` write), `checkpoint` (the
entry's work).
"""

from pfld.evaluation.figures import face_grid, figure_pixels, worst_and_median
from pfld.evaluation.predictions import predict
from pfld.evaluation.report import FaceTable, read_face_table, score, scored, write_face_table, write_report
from pfld.evaluation.scores import (
    breakdown_tables,
    face_errors,
    face_groups,
    group_table,
    metrics_table,
    nme_by_group,
    nme_by_part,
    part_table,
    pose_mae,
    summarize,
)

__all__ = [
    "FaceTable",
    "breakdown_tables",
    "face_errors",
    "face_grid",
    "face_groups",
    "figure_pixels",
    "group_table",
    "metrics_table",
    "nme_by_group",
    "nme_by_part",
    "part_table",
    "pose_mae",
    "predict",
    "read_face_table",
    "score",
    "scored",
    "summarize",
    "worst_and_median",
    "write_face_table",
    "write_report",
]
