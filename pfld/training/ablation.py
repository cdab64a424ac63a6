"""The ablation study's report: runs of Hydra multiruns grouped into rows (one ``ablation=<row>`` each,
several seeds), mean and standard deviation per row, the pose-factor x balance grid, the default-loss
rule, and plots. `scripts/ablations.py` is its command line; `docs/ablations.md` its output.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pfld.training.sweep import collect_runs

#: Extra groups scored from each run's best checkpoint (`rescore_run`): AFW has only 10 profile
#: (|yaw| > 30 deg), 7 head-down and 1 head-up faces, too few to tell losses apart; these have ~80 each.
RESCORE_FILE = "rescore.json"
TURNED_YAW_DEG = 15.0
TILTED_PITCH_DEG = 10.0
#: Columns of the tables: metric key in ``metrics.json``, header, how many decimals, x100 (percent).
COLUMNS: tuple[tuple[str, str, int, bool], ...] = (
    ("val/nme", "NME", 4, False),
    ("val/failure_rate", "FR@0.1 %", 1, True),
    ("val/auc", "AUC@0.1", 3, False),
    ("val/nme_frontal", "frontal", 4, False),
    ("val/nme_profile", "profile", 4, False),
    ("val/nme_head_up", "head up", 4, False),
    ("val/nme_head_down", "head down", 4, False),
    ("val/nme_yaw_over_15", "yaw>15", 4, False),
    ("val/nme_pitch_over_10", "pitch>10", 4, False),
    ("val/pose_mae", "pose MAE deg", 2, False),
)
#: Rows that weight faces (pose factor or class balance): candidates for the default loss.
PLAIN_ROWS = ("l1", "l1_pose", "l1_pose_head", "wing_pose", "rle_pose", "l1_binned_pose")
FACTORS = ("error", "error_detached", "truth", "none")
BALANCES = ("reciprocal", "effective", "none")


@dataclass
class Row:
    """One row: its name, the runs' seeds and their metrics."""

    name: str
    seeds: list[int] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    failed: int = 0

    def values(self, key: str) -> list[float]:
        out = []
        for m in self.metrics:
            v = m.get(key)
            if isinstance(v, (int, float)) and not math.isnan(v):
                out.append(float(v))
        return out

    def mean(self, key: str) -> float:
        values = self.values(key)
        return statistics.fmean(values) if values else math.nan

    def std(self, key: str) -> float:
        """Sample standard deviation over seeds (n - 1); NaN with fewer than two."""
        values = self.values(key)
        return statistics.stdev(values) if len(values) > 1 else math.nan


def _override(overrides: Sequence[str], key: str) -> str | None:
    for o in overrides:
        if o.startswith(f"{key}="):
            return o.split("=", 1)[1]
    return None


#: Overrides that do not make a row: the seed, the experiment, how the run used the machine.
NOT_A_ROW = (
    "seed",
    "experiment",
    "cpu.",
    "data.num_workers",
    "hydra.",
    "trainer.devices",
    "logger",
    "paths.",
)


def row_name(overrides: Sequence[str]) -> str | None:
    """A run's row: its ``ablation=`` override, else its other overrides (``data.input_size=96
    model.backbone.width=0.5``) less `NOT_A_ROW`; None when nothing is left."""
    ablation = _override(overrides, "ablation")
    if ablation is not None:
        return ablation
    kept = sorted(o for o in overrides if not o.lstrip("+~").startswith(NOT_A_ROW))
    return " ".join(kept) or None


def collect_rows(sweep_dirs: Sequence[str | Path]) -> dict[str, Row]:
    """Runs of every sweep folder grouped into rows (`row_name`); a seed run twice counts once (the
    later folder wins)."""
    by_seed: dict[str, dict[int, dict[str, float] | None]] = {}
    for folder in sweep_dirs:
        for run in collect_runs(folder):
            name = row_name(run["overrides"])
            if name is None:
                continue
            seed = int(_override(run["overrides"], "seed") or 0)
            metrics = run["metrics"]
            extra = Path(folder) / run["run"] / RESCORE_FILE
            if metrics is not None and extra.is_file():
                metrics = {**metrics, **json.loads(extra.read_text())}
            by_seed.setdefault(name, {})[seed] = metrics
    rows = {}
    for name, seeds in by_seed.items():
        row = Row(name)
        for seed in sorted(seeds):
            if seeds[seed] is None:
                row.failed += 1
            else:
                row.seeds.append(seed)
                row.metrics.append(seeds[seed])  # type: ignore[arg-type]
        rows[name] = row
    return rows


def _cell(row: Row, key: str, decimals: int, percent: bool) -> str:
    scale = 100.0 if percent else 1.0
    mean, std = row.mean(key) * scale, row.std(key) * scale
    if math.isnan(mean):
        return "-"
    if math.isnan(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def rows_table(rows: Sequence[Row]) -> str:
    """Markdown: one line per row, mean ± std over its seeds of each of `COLUMNS` (a run still going or
    failed counts as "without metrics")."""
    head = "| row | seeds | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(COLUMNS)]
    for row in rows:
        label = f"`{row.name}`"
        seeds = str(len(row.seeds)) + (f" (+{row.failed} without metrics)" if row.failed else "")
        lines.append(
            f"| {label} | {seeds} | "
            + " | ".join(_cell(row, key, d, pct) for key, _, d, pct in COLUMNS)
            + " |"
        )
    return "\n".join(lines)


def grid_table(rows: Mapping[str, Row], base: str = "l1", key: str = "val/nme") -> str:
    """Markdown: pose factor (lines) x class balance (columns) of ``<base>_<factor>_<balance>`` rows;
    ``none x none`` is the plain ``<base>_pose`` row."""
    lines = ["| pose factor \\ balance | " + " | ".join(BALANCES) + " |", "|---|" + "---:|" * len(BALANCES)]
    for factor in FACTORS:
        cells = []
        for balance in BALANCES:
            name = f"{base}_pose" if (factor, balance) == ("none", "none") else f"{base}_{factor}_{balance}"
            cells.append(_cell(rows[name], key, 4, False) if name in rows else "not run")
        lines.append(f"| {factor} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def difference(a: Row, b: Row, key: str = "val/nme") -> tuple[float, float]:
    """(mean of a - mean of b, its standard error from both rows' spreads)."""
    na, nb = len(a.values(key)), len(b.values(key))
    se = math.sqrt((a.std(key) ** 2) / max(na, 1) + (b.std(key) ** 2) / max(nb, 1))
    return a.mean(key) - b.mean(key), se


def decide_default(rows: Mapping[str, Row], key: str = "val/nme") -> tuple[str | None, str]:
    """The issue's rule: the weighted variant with the best mean NME becomes the default when its mean is
    no worse than the best plain loss's mean by more than that row's standard deviation, and its profile
    and head-down NME are both better. Returns (the chosen weighted row or None, the reasoning)."""
    plain = [rows[n] for n in PLAIN_ROWS if n in rows and rows[n].values(key)]
    weighted = [r for n, r in rows.items() if n not in PLAIN_ROWS and r.values(key)]
    if not plain or not weighted:
        return None, "not enough rows to decide (need plain and weighted rows with results)"
    best_plain = min(plain, key=lambda r: r.mean(key))
    best = min(weighted, key=lambda r: r.mean(key))
    spread = best_plain.std(key)
    spread = 0.0 if math.isnan(spread) else spread
    close = best.mean(key) <= best_plain.mean(key) + spread
    profile = best.mean("val/nme_profile") < best_plain.mean("val/nme_profile")
    head_down = best.mean("val/nme_head_down") < best_plain.mean("val/nme_head_down")
    reason = (
        f"best weighted row `{best.name}` NME {best.mean(key):.4f} vs best plain row `{best_plain.name}` "
        f"{best_plain.mean(key):.4f} ± {spread:.4f} ({'within' if close else 'beyond'} one std); profile "
        f"{best.mean('val/nme_profile'):.4f} vs {best_plain.mean('val/nme_profile'):.4f} "
        f"({'better' if profile else 'not better'}), head down {best.mean('val/nme_head_down'):.4f} vs "
        f"{best_plain.mean('val/nme_head_down'):.4f} ({'better' if head_down else 'not better'})"
    )
    return (best.name if close and profile and head_down else None), reason


def plot_rows(
    rows: Sequence[Row], path: str | Path, key: str = "val/nme", reference: str | None = None
) -> None:
    """Horizontal bars of each row's mean ``key`` with its seed spread, best at the top, each seed a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted((r for r in rows if r.values(key)), key=lambda r: r.mean(key), reverse=True)
    if not ordered:
        return  # no row has this metric (e.g. runs not rescored)
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(ordered) + 1.2))
    y = list(range(len(ordered)))
    means = [r.mean(key) for r in ordered]
    stds = [0.0 if math.isnan(r.std(key)) else r.std(key) for r in ordered]
    colors = ["tab:orange" if r.name == reference else "tab:blue" for r in ordered]
    ax.barh(y, means, xerr=stds, color=colors, alpha=0.6, capsize=2)
    for i, r in enumerate(ordered):
        ax.plot(r.values(key), [i] * len(r.values(key)), "k.", markersize=3)
    ax.set_yticks(y, [r.name for r in ordered], fontsize=8)
    lo = min(min(r.values(key)) for r in ordered)
    hi = max(max(r.values(key)) for r in ordered)
    ax.set_xlim(lo - 0.1 * (hi - lo) - 1e-4, hi + 0.1 * (hi - lo) + 1e-4)
    ax.set_xlabel(f"{key} (AFW), mean ± std over seeds; dots: seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def row_descriptions(config_dir: str | Path) -> dict[str, str]:
    """Each ``conf/ablation/<row>.yaml``'s first comment line after the package line."""
    out = {}
    for path in sorted(Path(config_dir).glob("*.yaml")):
        for line in path.read_text().splitlines():
            if line.startswith("#") and "@package" not in line:
                out[path.stem] = line.lstrip("# ").strip()
                break
    return out


def study_summary(rows: Mapping[str, Row], order: Sequence[str]) -> dict[str, Any]:
    """JSON-ready means and stds of every row, in ``order`` then any others."""
    names = [n for n in order if n in rows] + sorted(n for n in rows if n not in order)
    return {
        n: {
            "seeds": rows[n].seeds,
            **{k: {"mean": rows[n].mean(k), "std": rows[n].std(k)} for k, *_ in COLUMNS},
        }
        for n in names
    }


def rescore_run(checkpoint: str | Path, loader: Any) -> dict[str, float]:
    """NME of the validation faces turned by more than `TURNED_YAW_DEG` (annotated yaw) and tilted by more
    than `TILTED_PITCH_DEG` (pitch), from a run's best checkpoint; ``loader`` gives the validation set."""
    import torch

    from pfld.evaluation.predictions import predict
    from pfld.evaluation.scores import face_errors, nme_by_group
    from pfld.inference import TorchLandmarkModel, load_checkpoint

    model = TorchLandmarkModel(*load_checkpoint(checkpoint))
    out = predict(model, loader)
    normalization = model.spec.nme_normalization
    degrees = torch.rad2deg(out["angles"]).abs()
    valid = out["pose_valid"].bool()
    groups = {
        f"yaw_over_{TURNED_YAW_DEG:g}": valid & (degrees[:, 0] > TURNED_YAW_DEG),
        f"pitch_over_{TILTED_PITCH_DEG:g}": valid & (degrees[:, 1] > TILTED_PITCH_DEG),
    }
    table = nme_by_group(face_errors(out, normalization), groups)  # empty groups are left out
    scores = {}
    for name in groups:
        row = table.get(name, {"nme": math.nan, "faces": 0.0})
        scores[f"val/nme_{name}"] = row["nme"]
        scores[f"val/faces_{name}"] = row["faces"]
    return scores


def rescore_sweeps(sweeps: Sequence[str | Path]) -> None:
    """`rescore_run` for every finished run without a ``rescore.json``, on the validation faces as that
    run's own data config crops them (one loader per distinct config: input sizes differ in a sweep)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    loaders: dict[str, object] = {}
    for sweep in sweeps:
        for run in collect_runs(sweep):
            folder = Path(sweep) / run["run"]
            checkpoint = (run["metrics"] or {}).get("best_checkpoint")
            if not checkpoint or (folder / RESCORE_FILE).is_file():
                continue
            data = OmegaConf.load(folder / ".hydra" / "config.yaml").data
            data.num_workers = 0
            key = OmegaConf.to_yaml(data)
            if key not in loaders:
                datamodule = instantiate(data)
                datamodule.setup("validate")
                loaders[key] = datamodule.val_dataloader()
            scores = rescore_run(checkpoint, loaders[key])
            (folder / RESCORE_FILE).write_text(json.dumps(scores, indent=1) + "\n")
            print(f"{folder}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if "nme" in k))


def write_section(doc: str | Path, name: str, body: str, text: str | None = None) -> None:
    """Write ``body`` between the ``<!-- name:start -->`` and ``<!-- name:end -->`` markers of ``doc``
    (of ``text`` when given, e.g. a new document's), keeping everything around them. A report script's
    generated tables live there; the hand-written text and the other sections are kept.

    Raises:
        SystemExit: the markers are missing, naming the document and the markers.
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    doc = Path(doc)
    text = doc.read_text() if text is None else text
    if start not in text or end not in text:
        raise SystemExit(f"{doc}: no {start} ... {end} markers to write the table between")
    head, rest = text.split(start, 1)
    doc.write_text(f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}")
