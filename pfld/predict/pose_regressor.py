"""Head pose from landmarks alone: a small regressor from a face's normalised landmarks to yaw, pitch
and roll, for models without a pose output (the landmark tutorials' "pose from pairwise distances",
here on the points themselves, which keep the sign of yaw and roll that distances lose).

Features: the (K, 2) points centred on their mean and divided by their RMS distance from it, so the
crop's position and scale do not matter; the roll stays in them. A two-layer MLP maps the 2K values to
(3,) radians. `fit_pose_regressor` trains it on faces whose angles were fitted at preparation (the
training's ground truth); `scripts/pose_from_landmarks.py` trains one on the shared faces and compares
it on AFW with the auxiliary net and the solvePnP fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def pose_features(points: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, K, 2) or (K, 2) points, any pixel or unit frame -> (N, 2K) float32 position- and
    scale-free features (see the module's docstring)."""
    points = torch.as_tensor(np.asarray(points, np.float32) if isinstance(points, np.ndarray) else points)
    points = points.float().reshape(-1, *points.shape[-2:])
    centred = points - points.mean(dim=1, keepdim=True)
    scale = centred.pow(2).sum(dim=2).mean(dim=1).sqrt().clamp_min(1e-6)  # (N,) RMS distance
    return (centred / scale[:, None, None]).flatten(1)


class PoseRegressor(nn.Module):
    """(N, K, 2) landmarks -> (N, 3) yaw, pitch, roll in radians; ``scheme`` names their layout."""

    def __init__(self, num_points: int, scheme: str, hidden: int = 64) -> None:
        super().__init__()
        self.num_points, self.scheme, self.hidden = num_points, scheme, hidden
        self.net = nn.Sequential(
            nn.Linear(2 * num_points, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 3),
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.net(pose_features(points))

    @torch.no_grad()
    def __call__(self, points: np.ndarray | torch.Tensor) -> np.ndarray:  # type: ignore[override]
        """(N, K, 2) or (K, 2) points -> (N, 3) or (3,) radians as a NumPy array."""
        single = np.ndim(points) == 2
        if np.shape(points)[-2] != self.num_points:
            raise ValueError(f"this pose regressor takes {self.num_points} points, got {np.shape(points)}")
        angles = self.forward(torch.as_tensor(np.asarray(points, np.float32))).numpy()
        return angles[0] if single else angles

    def save(self, path: str | Path) -> None:
        meta = {"num_points": self.num_points, "scheme": self.scheme, "hidden": self.hidden}
        torch.save({"meta": meta, "state": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path) -> PoseRegressor:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such pose regressor file")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            regressor = cls(**saved["meta"])
            regressor.load_state_dict(saved["state"])
        except (KeyError, TypeError, RuntimeError) as error:
            raise ValueError(f"{path}: not a pose regressor saved by PoseRegressor.save ({error})") from error
        return regressor.eval()


def fit_pose_regressor(
    points: np.ndarray, angles: np.ndarray, scheme: str, steps: int = 3000, seed: int = 0
) -> PoseRegressor:
    """Train on (N, K, 2) fully labelled points and their (N, 3) angles in radians (full batch, Adam,
    L1 loss; a few seconds on a CPU for thousands of faces)."""
    keep = np.isfinite(points).all(axis=(1, 2)) & np.isfinite(angles).all(axis=1)
    if keep.sum() < 10:
        raise ValueError(f"need at least 10 faces with every point and known angles, got {int(keep.sum())}")
    torch.manual_seed(seed)
    regressor = PoseRegressor(points.shape[1], scheme)
    x = torch.from_numpy(points[keep].astype(np.float32))
    y = torch.from_numpy(angles[keep].astype(np.float32))
    optimizer = torch.optim.Adam(regressor.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs fastest on one thread (5x on a busy 2-core machine)
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = (regressor.forward(x) - y).abs().mean()
            loss.backward()
            optimizer.step()
            schedule.step()
    finally:
        torch.set_num_threads(threads)
    return regressor.eval()
