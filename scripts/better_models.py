"""Turn the better-models study's runs into docs/better_models.md's table.

    python scripts/better_models.py logs/mixed [--doc docs/better_models.md --json docs/better_models.json]
    python scripts/better_models.py logs/long --section long --doc docs/better_models.md --json docs/better_models.json
    python scripts/better_models.py logs/finalfit --section final_fit --doc docs/better_models.md ...
    python scripts/better_models.py logs/long --rows base_e40 posenarrow_e40 --section pose_net --doc docs/training.md

Each run is a folder ``<row>_s<seed>`` with the ``metrics.json`` training wrote or ``evaluate.py``'s report
(see the commands in the document); rows are described by `ROWS`. Writes the table between the ``<!-- SECTION:start -->`` and
``<!-- SECTION:end -->`` markers of the document (default section ``generated``; the hand-written text
and the other sections are kept) and merges the figures into the JSON file (rows of other sections, whose
run folders may be gone, are kept).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pfld.evaluation.scores import as_validation
from pfld.training.ablation import Row, difference, rows_table, write_section

#: row -> (what it is, optimizer steps, the row it is compared with: same steps)
ROWS: dict[str, tuple[str, int, str | None]] = {
    "base_e6": ("68-point faces only, 6 epochs", 474, None),
    "mtfl_e2": ("+ MTFL five-point faces, 2 epochs (same steps)", 472, "base_e6"),
    "base_e18": ("68-point faces only, 18 epochs", 1422, None),
    "mtfl_e6": ("+ MTFL five-point faces, 6 epochs (same steps)", 1416, "base_e18"),
    "share25_e6": ("+ MTFL, 25 % of each batch (train_shares), 6 epochs", 1416, "base_e18"),
    "pseudo_e6": (
        "+ MTFL pseudo-labelled to 68 points by the teacher (9,805 kept), 6 epochs",
        1398,
        "base_e18",
    ),
    "distill_e18": ("68-point faces + distillation from the teacher (weight 1), 18 epochs", 1422, "base_e18"),
    "pseudo_distill_e6": ("+ MTFL pseudo-labelled + distillation, 6 epochs", 1416, "base_e18"),
    "teacher_e40": ("the teacher: 68-point faces only, 40 epochs", 3160, None),
    # the long budget (section "long"): the zoo's 0.25X and 1X as an ensemble teacher
    "base_e40": ("68-point faces only, 40 epochs", 3160, None),
    "pseudo_e13": (
        "+ MTFL pseudo-labelled to 68 points by the zoo ensemble (9,954 kept), 13 epochs",
        3055,
        "base_e40",
    ),
    "distill_e40": (
        "68-point faces + distillation from the zoo ensemble (weight 1), 40 epochs",
        3160,
        "base_e40",
    ),
    "pseudow05_e13": (
        "as pseudo_e13, the pseudo-labelled points weighing 0.5 (pseudo_weight)",
        3055,
        "pseudo_e13",
    ),
    "posenarrow_e40": (
        "68-point faces only, a narrow pose net (model.pose_channels=[32,16,32,16]), 40 epochs",
        3160,
        "base_e40",
    ),
    # the zoo's budget (section "zoo"): its 68-point-only 0.25X trained 120 epochs, 9,480 steps
    "pseudo_e40": (
        "+ MTFL pseudo-labelled to 68 points by the zoo ensemble (9,954 kept), 40 epochs",
        9400,
        None,
    ),
    # the final-fit check (section "final_fit"): last checkpoints scored with evaluate.py on the half of
    # AFW that no run trained on (data=final_fit_check)
    "held_base_e40": ("68-point faces only, 40 epochs (the base_e40 runs)", 3160, None),
    "held_finalfit_e40": (
        "+ the other half of AFW (153 faces) in the training set, as a final fit adds AFW",
        3160,
        "held_base_e40",
    ),
}


def collect(folder: Path) -> dict[str, Row]:
    """Rows of the ``<row>_s<seed>`` folders in ``folder`` that hold a ``metrics.json`` (a training run's
    or an ``evaluate.py`` report's)."""
    rows: dict[str, Row] = {}
    for run in sorted(folder.iterdir()):
        match = re.fullmatch(r"(.+)_s(\d+)", run.name)
        metrics = run / "metrics.json"
        if not run.is_dir() or match is None or not metrics.is_file():
            continue
        row = rows.setdefault(match[1], Row(match[1]))
        row.seeds.append(int(match[2]))
        row.metrics.append(as_validation(json.loads(metrics.read_text())))
    return rows


def generated(rows: dict[str, Row]) -> tuple[str, dict]:
    ordered = [rows[name] for name in ROWS if name in rows]
    lines = [
        rows_table(ordered),
        "",
        "| row | what | steps | NME vs its baseline (same steps) |",
        "|---|---|---:|---|",
    ]
    summary = {}
    for row in ordered:
        what, steps, base = ROWS[row.name]
        versus = "-"
        if base in rows:
            delta, se = difference(row, rows[base])
            relative = delta / rows[base].mean("val/nme") * 100
            versus = f"{delta:+.4f} ({relative:+.1f} %)" + ("" if math.isnan(se) else f", SE {se:.4f}")
        lines.append(f"| `{row.name}` | {what} | {steps} | {versus} |")
        summary[row.name] = {
            "what": what,
            "steps": steps,
            "seeds": row.seeds,
            "nme": row.values("val/nme"),
            "nme_mean": row.mean("val/nme"),
            "nme_std": row.std("val/nme"),
            "profile_mean": row.mean("val/nme_profile"),
        }
    return "\n".join(lines), summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, help="folder of <row>_s<seed> run folders")
    parser.add_argument("--doc", type=Path, default=None, help="write the table into this document")
    parser.add_argument("--json", type=Path, default=None, help="merge the figures into this file")
    parser.add_argument("--section", default="generated", help="the document's markers to write between")
    parser.add_argument("--rows", nargs="+", default=None, help="only these rows (default: every row found)")
    args = parser.parse_args()
    rows = collect(args.runs)
    if args.rows is not None:
        rows = {name: rows[name] for name in args.rows if name in rows}
    table, summary = generated(rows)
    print(table)
    if args.doc is not None:
        write_section(args.doc, args.section, table)
    if args.json is not None:
        kept = json.loads(args.json.read_text()) if args.json.is_file() else {}
        args.json.write_text(json.dumps(kept | summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
