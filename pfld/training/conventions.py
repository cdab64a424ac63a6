"""Annotation conventions: a learned, training-only correction per train source's way of annotating.

Sources annotate the same face differently: 300W's photos and the ytf68 video frames place the jaw
contour, the nose bridge and the brows in systematically different places, and MTFL's eye centres are
pupils, not the mean of 300W's eye contour. Trained on all of them at once, the model learns a blend,
and is scored against one of them (AFW is annotated like 300W). ``data.train_conventions`` labels each
train source: 0 is the reference convention (the model's own output, what validation, export and
inference see), 1, 2, ... others. For a face of convention c > 0 the loss compares its annotation with

    prediction + offset_c + features @ W_c

an offset per point (its shift, mirrored on a flipped crop) plus, with ``linear``, a linear map of the
head's pooled features (how the shift varies with the face, e.g. its pose). Both start at zero and live
beside the model (`PFLDModule.conventions`), so checkpoints keep them for resuming but the model, its
export and every reader of a checkpoint's model weights never carry them. This is the multi-dataset
practice of a head per data set, at the cost of one Linear per extra convention, during training only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class ConventionAdapters(nn.Module):
    """The corrections of conventions 1..C-1 (convention 0, the reference, has none).

    Args:
        conventions: C, the number of conventions including the reference (>= 2).
        flip_permutation: (K,) the scheme's flip permutation (the training scheme's K points), to mirror
            an offset on a flipped crop: there point i is the mirror image of point ``perm[i]``.
        in_features: F, the width of the head's pooled features (`MultiScaleHead.pooled`).
        linear: add the linear map of the features to the constant offsets.
    """

    def __init__(
        self,
        conventions: int,
        flip_permutation: Sequence[int] | np.ndarray,
        in_features: int,
        linear: bool = True,
    ) -> None:
        super().__init__()
        if conventions < 2:
            raise ValueError(f"ConventionAdapters needs at least 2 conventions, got {conventions}")
        permutation = torch.tensor(np.array(flip_permutation), dtype=torch.int64)
        k = len(permutation)
        self.register_buffer("flip_permutation", permutation, persistent=False)
        self.offsets = nn.Parameter(torch.zeros(conventions - 1, k, 2))
        self.weights = nn.Parameter(torch.zeros(conventions - 1, in_features, k * 2)) if linear else None

    @property
    def conventions(self) -> int:
        return len(self.offsets) + 1

    def forward(
        self, landmarks: torch.Tensor, features: torch.Tensor, convention: torch.Tensor, flipped: torch.Tensor
    ) -> torch.Tensor:
        """(B, K, 2) predictions in the reference convention -> each face's in its own ``convention``
        (B,) int64, given the (B, F) pooled features and whether each crop was ``flipped`` (B,) bool."""
        outside = (convention < 0) | (convention >= self.conventions)
        if bool(outside.any()):
            raise ValueError(
                f"a face has convention {int(convention[outside][0])}, outside 0..{self.conventions - 1}"
            )
        b, k = landmarks.shape[:2]
        others = convention > 0
        index = (convention - 1).clamp(min=0)
        offsets = self.offsets[index]  # (B, K, 2)
        mirrored = offsets[:, self.flip_permutation] * offsets.new_tensor([-1.0, 1.0])
        offsets = torch.where(flipped.view(b, 1, 1), mirrored, offsets)
        if self.weights is not None:
            linear = torch.bmm(features.float().unsqueeze(1), self.weights[index]).view(b, k, 2)
            offsets = offsets + linear
        return landmarks + offsets * others.view(b, 1, 1).to(offsets.dtype)
