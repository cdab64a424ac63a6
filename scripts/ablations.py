"""Turn the loss study's runs into docs/ablations.md's tables and plots.

    python train.py -m experiment=loss_ablation                 # or several lanes / folders
    python scripts/ablations.py logs/train/multiruns/<time> [more sweep folders...]

Reads every run's ``metrics.json`` and ``.hydra/overrides.yaml`` (rows by their ``ablation=`` override,
seeds by ``seed=``), writes the tables between the ``<!-- generated -->`` markers of the document (the
hand-written text around them is kept), ``docs/figures/ablation_*.png`` and ``docs/ablations.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pfld.training.ablation import (
    RESCORE_FILE,
    collect_rows,
    decide_default,
    difference,
    grid_table,
    plot_rows,
    rescore_sweeps,
    row_descriptions,
    rows_table,
    study_summary,
    write_section,
)

START, END = "<!-- generated:start -->", "<!-- generated:end -->"
#: Row order of the tables: the experiment's sweep order.
ORDER = [
    "l1",
    "l1_pose",
    "l1_pose_head",
    "pfld_paper",
    "wing_pose",
    "rle_pose",
    "l1_binned_pose",
    "l1_truth_none",
    "l1_truth_reciprocal",
    "l1_truth_effective",
    "l1_error_none",
    "l1_error_reciprocal",
    "l1_error_effective",
    "l1_error_detached_none",
    "l1_error_detached_reciprocal",
    "l1_error_detached_effective",
    "l1_none_reciprocal",
    "l1_none_effective",
]
REFERENCE = "l1_pose"  # today's default


def generated_section(sweeps: list[Path], figures: Path, doc_dir: Path) -> tuple[str, dict]:
    rows = collect_rows(sweeps)
    if not rows:
        raise SystemExit(f"no finished or running runs under {', '.join(map(str, sweeps))}")
    names = [n for n in ORDER if n in rows] + sorted(n for n in rows if n not in ORDER)
    ordered = [rows[n] for n in names]
    missing = [n for n in ORDER if n not in rows]
    descriptions = row_descriptions(ROOT / "conf" / "ablation")
    figures.mkdir(parents=True, exist_ok=True)
    plot_rows(ordered, figures / "ablation_nme.png", reference=REFERENCE)
    plot_rows(ordered, figures / "ablation_nme_turned.png", key="val/nme_yaw_over_15", reference=REFERENCE)
    chosen, reason = decide_default(rows)
    reference = REFERENCE if REFERENCE in rows else None
    lines = ["## All rows", "", "Mean ± standard deviation over seeds (AFW validation, 337 faces).", ""]
    lines += [rows_table(ordered), ""]
    lines += [f"- `{n}`: {descriptions[n]}" for n in names if n in descriptions] + [""]
    if reference:
        lines += [f"Difference from `{REFERENCE}` (today's default) in NME, with its standard error:", ""]
        lines += ["| row | ΔNME | ± SE | |", "|---|---:|---:|---|"]
        for row in ordered:
            if row.name == REFERENCE or not row.values("val/nme"):
                continue
            delta, se = difference(row, rows[REFERENCE])
            verdict = "within noise (< 2 SE)" if abs(delta) < 2 * se else ("better" if delta < 0 else "worse")
            lines.append(f"| `{row.name}` | {delta:+.4f} | {se:.4f} | {verdict} |")
        lines.append("")
    if any(n in ORDER for n in names):  # the loss study: its grid and the default-loss rule
        lines += ["## Pose factor x class balance on L1 (NME)", "", grid_table(rows), ""]
        verdict = f"`{chosen}`" if chosen else "no weighted row"
        lines += ["## The default rule", "", f"Chosen: {verdict}. {reason}.", ""]
        if missing:
            lines += ["Rows not run yet: " + ", ".join(f"`{n}`" for n in missing) + ".", ""]
    relative = figures.relative_to(doc_dir) if figures.is_relative_to(doc_dir) else figures
    lines += [
        f"![NME by row]({relative}/ablation_nme.png)",
        "",
        f"![NME of the AFW faces turned by more than 15 degrees, by row]({relative}/ablation_nme_turned.png)",
    ]
    return "\n".join(lines), study_summary(rows, ORDER)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "sweeps", nargs="+", type=Path, help="sweep folders (each holds numbered run folders)"
    )
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "ablations.md")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "ablations.json")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help=f"first score each finished run's best checkpoint on the turned and tilted faces ({RESCORE_FILE})",
    )
    args = parser.parse_args()
    for folder in args.sweeps:
        if not folder.is_dir():
            raise SystemExit(f"{folder}: not a folder")
    if args.rescore:
        rescore_sweeps(args.sweeps)
    section, summary = generated_section(args.sweeps, args.figures.resolve(), args.doc.resolve().parent)
    new_doc = None if args.doc.is_file() else f"# Ablations\n\n{START}\n{END}\n"
    write_section(args.doc, "generated", section, new_doc)
    args.json.write_text(json.dumps(summary, indent=1) + "\n")
    print(section)
    print(f"\nwrote {args.doc}, {args.json} and {args.figures}/ablation_*.png")


if __name__ == "__main__":
    main()
