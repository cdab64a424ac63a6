"""Score a model on faces of another landmark scheme: its points mapped to theirs.

A 68-point model on MTFL's five-point faces: each eye centre it is scored on is the mean of its six
predicted eye points, the nose tip its point 30, the mouth corners 48 and 54 (the shipped
``five_point -> ibug68`` mapping, `pfld.data.schemes.mapping`). ``evaluate.py`` does this when the
checkpoint's scheme and the data's differ and a mapping relates them: the faces' points the mapping
does not use are left out of the score, and the NME is normalised as the data config says for the
faces' scheme (``data.normalization``: inter-pupil for five-point faces).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from pfld.data.schemes.mapping import SchemeMapping
from pfld.inference.models import LandmarkModel


class MappedModel:
    """``model``'s points mapped to ``mapping.source``'s scheme (NaN at the points it does not use);
    the pose output, if any, as it is. ``normalization``: the mode and point pair of the NME on the
    mapped points."""

    def __init__(
        self, model: LandmarkModel, mapping: SchemeMapping, normalization: str, pair: tuple[int, int] | None
    ) -> None:
        if mapping.target.name != model.spec.scheme or mapping.target.num_points != model.spec.num_points:
            raise ValueError(
                f"{mapping.where}: maps to {mapping.target.name!r} points but the model predicts "
                f"{model.spec.num_points} {model.spec.scheme!r} points"
            )
        self.model, self.mapping = model, mapping
        self.spec = replace(
            model.spec,
            scheme=mapping.source.name,
            num_points=mapping.source.num_points,
            normalization=pair,
            normalization_mode=normalization,
        )

    @property
    def has_pose(self) -> bool:
        return self.model.has_pose

    def __call__(self, images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        points, angles = self.model(images)
        points = torch.as_tensor(points).detach().cpu().numpy()
        return self.mapping.project(points).astype(np.float32), angles
