"""One table of a Hydra multirun: each run's overrides and final metrics, written when the sweep ends.

Each run writes ``metrics.json`` into its folder (`pfld.training.tracking.write_metrics`, at the end of
`pfld.training.loop.train`); `SweepSummary`, a Hydra callback (``hydra.callbacks`` in conf/hydra/default.yaml),
reads them and writes ``summary.md`` into the sweep folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pfld.training.tracking import METRICS_FILE

SUMMARY_FILE = "summary.md"


def collect_runs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Each run folder of a sweep (one with ``.hydra/overrides.yaml``), in job order: ``run`` (folder
    name), ``overrides`` (list of ``key=value``) and ``metrics`` (None when the run wrote none: it failed
    or is still running)."""
    runs = []
    for folder in Path(sweep_dir).iterdir():
        overrides_file = folder / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        metrics_file = folder / METRICS_FILE
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        runs.append(
            {
                "run": folder.name,
                "overrides": yaml.safe_load(overrides_file.read_text()) or [],
                "metrics": metrics,
            }
        )
    return sorted(
        runs, key=lambda r: (not r["run"].isdigit(), int(r["run"]) if r["run"].isdigit() else 0, r["run"])
    )


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary_table(runs: Sequence[dict[str, Any]], metrics: Sequence[str], sort_by: str | None = None) -> str:
    """Markdown: a line of the overrides every run shares, then one row per run with the overrides that
    differ and the ``metrics`` (``-`` where missing, ``failed`` where a run wrote no metrics), best
    ``sort_by`` (lowest) first and runs without it last."""
    if not runs:
        return "no runs found"
    common = [o for o in runs[0]["overrides"] if all(o in r["overrides"] for r in runs)]

    def key(run: dict[str, Any]) -> tuple[bool, float]:
        value = (run["metrics"] or {}).get(sort_by) if sort_by else None
        missing = not isinstance(value, (int, float)) or math.isnan(value)
        return missing, 0.0 if missing else float(value)

    ordered = sorted(runs, key=key) if sort_by else list(runs)
    lines = [f"common overrides: {' '.join(common) or '(none)'}", ""]
    lines += ["| run | overrides | " + " | ".join(metrics) + " |", "|---|---|" + "---:|" * len(metrics)]
    for run in ordered:
        varying = " ".join(o for o in run["overrides"] if o not in common) or "(none)"
        if run["metrics"] is None:
            values = ["failed"] + ["-"] * (len(metrics) - 1)
        else:
            values = [_format(run["metrics"].get(m)) for m in metrics]
        lines.append(f"| {run['run']} | {varying} | " + " | ".join(values) + " |")
    return "\n".join(lines)


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, ``summary.md`` in the sweep folder (printed too).

    Args:
        metrics: keys of each run's ``metrics.json`` to show, as columns.
        sort_by: the metric to rank runs by (lowest first), or None for job order.
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("val/nme", "val/failure_rate", "val/auc"),
        sort_by: str | None = "val/nme",
    ) -> None:
        self.metrics, self.sort_by = list(metrics), sort_by

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        table = summary_table(collect_runs(sweep_dir), self.metrics, self.sort_by)
        (sweep_dir / SUMMARY_FILE).write_text(f"# Sweep {sweep_dir}\n\n{table}\n")
        print(f"\nSweep summary ({sweep_dir / SUMMARY_FILE}):\n{table}")
