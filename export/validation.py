"""Which checkpoint of a run goes to the zoo, and what a final fit's card quotes as its accuracy.

A run's best checkpoint is exported (`best_checkpoint`); a final fit's last one (`last_checkpoint`: no
held-out faces to pick an epoch by). A final fit's accuracy is that of the run its recipe and epochs were
chosen on (`read_validation`), given as either

- that training run's folder (``metrics.json``, ``.hydra/``): its AFW figures and its train command; or
- an ``evaluate.py`` report of its model (``python evaluate.py ckpt=... data=shared out=DIR``), for when the
  run folder is gone, e.g. the zoo model the final fit replaces. The command is then that of the
  checkpoint's run folder when it is still beside it, or else that of the zoo card committed with the
  checkpoint's exact bytes (the report keeps their SHA-256).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from export.provenance import ROOT, committed_bytes, committed_version, train_command
from pfld.evaluation.scores import as_validation
from pfld.io.paths import shown_path

#: The comment after the command of the run before the fit, in the card's command block.
BEFORE = "   # the run before the fit: its recipe and epochs chosen on AFW"


def last_checkpoint(run: Path) -> Path:
    """A final fit's checkpoint: the end of its schedule (``checkpoints/last.ckpt``)."""
    last = run / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(
            f"{last}: a final fit is exported from its last checkpoint, which is not there"
        )
    return last


def best_checkpoint(run: Path) -> Path:
    """The run's best checkpoint, as its ``metrics.json`` names it (or the same file name under the
    run's ``checkpoints/``, when the run folder has moved)."""
    metrics = json.loads((run / "metrics.json").read_text())
    named = Path(metrics.get("best_checkpoint") or "")
    for candidate in (named, run / "checkpoints" / named.name):
        if named.name and candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{run}/metrics.json: its best_checkpoint {str(named)!r} is not there")


@dataclass(frozen=True)
class Validation:
    """The run before a final fit as its card quotes it: its figures under the training log's names
    (``val/nme`` ...), the table row's label, the commands that made (and scored) it, and the number of
    validation faces when the source says."""

    metrics: dict[str, Any]
    label: str
    commands: list[str]
    faces: int | None = None


def _card_train_command(checkpoint: Path, commit: str) -> str | None:
    """The ``python train.py ...`` line of the MODEL_CARD.md committed beside ``checkpoint`` in ``commit``."""
    card = committed_bytes(commit, checkpoint.parent / "MODEL_CARD.md")
    if card is None:
        return None
    found = re.search(r"^python train\.py [^\n]*?(?=\s*(#|$))", card.decode(), re.MULTILINE)
    return found[0] if found else None


def _report_commands(report: dict[str, Any], source: Path, data: str) -> list[str]:
    """How the model an ``evaluate.py`` report scored was trained, and the command that scored it."""
    checkpoint = Path(report["checkpoint"])
    checkpoint = checkpoint if checkpoint.is_absolute() else ROOT / checkpoint
    run = checkpoint.parent.parent
    if (run / ".hydra" / "overrides.yaml").is_file():
        trained = [train_command(run) + BEFORE]
        scored = shown_path(checkpoint, ROOT)
    else:
        digest = report.get("checkpoint_sha256")
        commit = committed_version(checkpoint, digest) if digest else None
        if commit is None:
            raise ValueError(
                f"{source}/metrics.json: its checkpoint {report['checkpoint']} has no run folder beside it and "
                "is in no commit with the bytes it scored, so how it was trained cannot be told"
            )
        command = _card_train_command(checkpoint, commit)
        scored = f"before-the-fit{checkpoint.suffix}"
        restore = f"git show {commit}:{shown_path(checkpoint, ROOT)} > {scored}   # that run's model"
        if command:
            trained = [command + BEFORE + " (its card in that commit)", restore]
        else:
            trained = [restore + f"; how it was trained: its MODEL_CARD.md in commit {commit}"]
    return [*trained, f"python evaluate.py ckpt={scored} data={data}"]


def read_validation(source: Path, data: str) -> Validation:
    """The run before a final fit, from its training run folder or an ``evaluate.py`` report of its model
    (scored on ``data``'s validation faces; see the module)."""
    metrics_file = source / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{source}: the run before the fit has no metrics.json to quote")
    metrics = json.loads(metrics_file.read_text())
    if (source / ".hydra" / "config.yaml").is_file():
        seed = OmegaConf.load(source / ".hydra" / "config.yaml").get("seed", "?")
        return Validation(metrics, f"before the fit, seed {seed}", [train_command(source) + BEFORE])
    if "nme" in metrics and "checkpoint" in metrics:
        return Validation(
            as_validation(metrics),
            "before the fit",
            _report_commands(metrics, source, data),
            metrics.get("faces"),
        )
    raise ValueError(
        f"{source}: neither a training run (metrics.json and .hydra/) nor an evaluate.py report (metrics.json "
        "with nme and checkpoint)"
    )


def validation_lines(validations: Validation | Sequence[Validation]) -> list[str]:
    """The card's accuracy of a final fit: the figures of the run before it, on faces it did not train on;
    of each run when several seeds of it are given, then their mean and standard deviation (the columns
    every run has)."""
    from pfld.training.ablation import COLUMNS

    runs = [validations] if isinstance(validations, Validation) else list(validations)
    columns = [
        (key, title, d, 100 if pct else 1)
        for key, title, d, pct in COLUMNS
        if all(run.metrics.get(key) is not None for run in runs)
    ]
    rows = [
        f"| {run.label} | "
        + " | ".join(f"{run.metrics[key] * scale:.{d}f}" for key, _, d, scale in columns)
        + " |"
        for run in runs
    ]
    if len(runs) > 1:
        spread = []
        for key, _, d, scale in columns:
            values = np.array([run.metrics[key] * scale for run in runs], dtype=float)
            spread.append(f"{values.mean():.{d}f} ± {values.std(ddof=1):.{d}f}")
        rows.append(f"| mean ± sd, {len(runs)} runs | " + " | ".join(spread) + " |")
    held_out = (
        f"the same recipe with those faces held out, in {len(runs)} runs (seeds; their commands are above):"
        if len(runs) > 1
        else "the same recipe with those faces held out (its commands are above):"
    )
    return [
        (
            "This model trained on the validation faces too (a final fit), so its own figures on them mean "
            f"little. Its accuracy is that of the run its settings and epochs were chosen on, {held_out}"
        ),
        "",
        "| run | " + " | ".join(title for _, title, _, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
        *rows,
        "",
        (
            "The tables after it are the final fit's own, on faces it trained on: they compare its PyTorch, "
            "ONNX fp32 and int8 forms with one another, not with other models."
        ),
        "",
    ]


__all__ = ["Validation", "best_checkpoint", "last_checkpoint", "read_validation", "validation_lines"]
