"""Pictures for a person to look at: CED curves (`plot_ced`), the worst and the median faces, a figure as
pixels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch import Tensor

from pfld.data.dataset import LandmarkDataset
from pfld.data.preview import draw_landmarks
from pfld.metrics import auc, ced_curve, failure_rate

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LEGEND = "green: truth; prediction: red = subject's right side, blue = left, yellow = middle"
PREDICTED_MIDDLE = (255, 255, 0)  # RGB of predicted points without a flip partner (nose, chin, ...)


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.45) -> None:
    """White text on a black box, in place; ``origin`` is the text's bottom-left corner."""
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin
    cv2.rectangle(image, (x - 2, y - height - 2), (x + width + 2, y + baseline), (0, 0, 0), -1)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def face_tile(dataset: LandmarkDataset, index: int, prediction: np.ndarray, error: float) -> np.ndarray:
    """(2S, 2S, 3) uint8: face ``index`` of ``dataset`` with its true points (green) and the (K, 2)
    ``prediction`` (coloured by side, see `LEGEND`), its NME written in a corner."""
    sample = dataset[index]
    image = sample["image"].numpy()  # (S, S, 3) uint8 RGB
    visible = sample["visible"].numpy()
    truth = draw_landmarks(image, sample["landmarks"].numpy(), None, (0, 255, 0), scale=2, visible=visible)
    tile = draw_landmarks(truth, prediction, dataset.scheme, PREDICTED_MIDDLE, scale=1)
    _text(tile, f"#{index} NME {error:.3f}", (4, 16))
    return tile


def worst_and_median(errors: torch.Tensor, count: int) -> dict[str, list[int]]:
    """Indices of the ``count`` scored faces with the highest NME (worst first) and of the ``count``
    around the median; unscored (NaN) faces are never picked."""
    scored = torch.nonzero(~torch.isnan(errors)).flatten()
    order = scored[torch.argsort(errors[scored], descending=True, stable=True)]
    start = max(0, min(len(order) - count, len(order) // 2 - count // 2))
    return {"worst": order[:count].tolist(), "median": order[start : start + count].tolist()}


def face_grid(
    dataset: LandmarkDataset, predictions: torch.Tensor, errors: torch.Tensor, count: int = 6
) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a labelled row of the ``count`` worst faces, then one of the median faces.

    Args:
        dataset: the faces predicted, in order (an evaluation transform, so that sample i is face i).
        predictions: (N, K, 2) landmarks in [0, 1] of the crop, N <= len(dataset).
        errors: (N,) NME of each face, NaN where unscored.
    """
    rows = []
    for label, picks in worst_and_median(errors, count).items():
        if not picks:
            continue
        tiles = [face_tile(dataset, i, predictions[i].numpy(), float(errors[i])) for i in picks]
        tiles += [np.zeros_like(tiles[0])] * (count - len(tiles))
        row = np.hstack(tiles)
        band = np.zeros((24, row.shape[1], 3), dtype=np.uint8)
        low, high = float(errors[picks].min()), float(errors[picks].max())
        _text(band, f"{label} {len(picks)} of {len(errors)} faces, NME {low:.3f} to {high:.3f}", (6, 17), 0.5)
        rows += [band, row]
    if not rows:
        raise ValueError("no face could be scored: nothing to draw")
    legend = np.zeros((22, rows[0].shape[1], 3), dtype=np.uint8)
    _text(legend, LEGEND, (6, 16), 0.45)
    return np.vstack([legend, *rows])


def figure_pixels(figure: Figure) -> np.ndarray:
    """(H, W, 3) uint8 RGB rendering of a matplotlib figure drawn on an Agg canvas (`plot_ced`'s)."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def plot_ced(curves: dict[str, Tensor], threshold: float = 0.10, path: str | Path | None = None) -> Figure:
    """CED curves of several models on one plot, with NME / failure rate / AUC in the legend.

    Args:
        curves: model name -> (N,) per-face NMEs, finite (drop unscored faces with `scored_nmes`).
        threshold: NME range of the plot, the failure threshold and the AUC limit.
        path: if given, the figure is saved there as PNG (parent folders are created).

    Returns:
        The matplotlib Figure (drawn on an Agg canvas, without pyplot or a change of global backend).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_ced needs at least one curve")
    fig = Figure(figsize=(6.0, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, nmes in curves.items():
        nmes = torch.as_tensor(nmes).detach().cpu()
        x, y = ced_curve(nmes, threshold)
        label = (
            f"{name}: NME {nmes.double().mean().item():.2%}, FR@{threshold:g} "
            f"{failure_rate(nmes, threshold):.2%}, AUC@{threshold:g} {auc(nmes, threshold):.4f}"
        )
        ax.plot(x.numpy(), y.numpy(), label=label)
    ax.set_xlim(0.0, threshold)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("NME")
    ax.set_ylabel("fraction of faces")
    ax.set_title("Cumulative error distribution")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=150)
    return fig
