"""The same scores as training (NME, failure rate, AUC) for PyTorch and ONNX models on one loader."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from export.latency import session
from export.onnx_export import INPUT_NAME, OUTPUT_NAME, POSE_NAME
from pfld.evaluation.predictions import Predictor, predict
from pfld.evaluation.scores import face_errors, face_groups, summarize
from pfld.metrics import Normalization


def onnx_predictor(path: str | Path, threads: int = 0) -> Callable[[torch.Tensor], Any]:
    """An onnxruntime CPU session as a `Predictor`: (B, 3, S, S) -> landmarks, or (landmarks, pose in
    radians) when the model has a ``pose`` output (stored in degrees)."""
    runner = session(path, threads)
    names = [output.name for output in runner.get_outputs()]

    def run(images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feeds = {INPUT_NAME: np.ascontiguousarray(images.numpy(), dtype=np.float32)}
        outputs = dict(zip(names, runner.run(names, feeds), strict=True))
        landmarks = torch.from_numpy(outputs[OUTPUT_NAME])
        if POSE_NAME in outputs:
            return landmarks, torch.deg2rad(torch.from_numpy(outputs[POSE_NAME]))
        return landmarks

    return run


def score(
    predictor: torch.nn.Module | Predictor,
    loader: DataLoader,
    normalization: Normalization,
    threshold: float = 0.10,
    subsets: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """`pfld.evaluation.scores.summarize` of ``predictor`` over ``loader``: NME, FR and AUC at
    ``threshold``, face counts, NME by group (``subsets``: see `face_groups`), and pose error when the
    predictor gives angles."""
    out = predict(predictor, loader)
    errors = face_errors(out, normalization)
    return summarize(out, errors, face_groups(out, loader.dataset.faces, subsets), threshold)
