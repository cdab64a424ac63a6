"""Compare models face by face on the same validation faces: paired NME differences, by group.

    python evaluate.py ckpt=A.ckpt data=shared out=eval/a
    python evaluate.py ckpt=B.ckpt data=shared out=eval/b
    python scripts/paired_nme.py eval/a eval/b [--groups profile,frontal] [--json F]

Each argument is a report's ``val_faces.csv`` (what `evaluate.py` and training's ``validate_best``
report write, one row per face), or the folder holding it; ``LABEL=PATH`` names it. The reports must
score the same faces in the same order (the same data config), which is checked by the faces' sources.

Prints each model's mean NME over each group's faces, then, for every pair of models, B - A: the mean
of the per-face differences, its standard error (sd / sqrt(n)), their ratio and the share of faces
where B is better. Pairing takes out what the faces share, so a difference is measured against the
spread of the differences, not of the NMEs: on AFW's 337 faces a 1 % difference between two models of
one recipe can be several standard errors, or none, which two means alone cannot say. It says nothing
about seeds: two seeds of one recipe differ too, so compare a recipe's seeds the same way first.
Groups: every group of the reports (``profile``, ``frontal``, ``subset:<name>`` ...), or ``--groups``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pfld.evaluation.report import FaceTable, read_face_table
from pfld.evaluation.scores import nme_by_group
from pfld.metrics import paired_difference


def check_same_faces(tables: dict[str, FaceTable]) -> None:
    """Raise unless every table lists the same faces (by source) in the same order."""
    (_, first), *others = tables.items()
    for label, table in others:
        if table.sources != first.sources:
            n, m = len(first.sources), len(table.sources)
            where = next(
                (i for i, (a, b) in enumerate(zip(first.sources, table.sources)) if a != b), min(n, m)
            )
            raise ValueError(
                f"{table.path} and {first.path} do not score the same faces ({m} and {n} faces; "
                f"first difference at face {where}): evaluate both with the same data config"
            )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="val_faces.csv or its folder, optionally LABEL=PATH")
    parser.add_argument("--groups", help="comma-separated groups to show (default: all the reports have)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if len(args.reports) < 2:
        parser.error("give two reports or more")

    tables = {}
    for entry in args.reports:
        label, _, path = entry.rpartition("=")
        tables[label or path] = read_face_table(path)
    check_same_faces(tables)
    first = next(iter(tables.values()))
    names = list(first.groups) if not args.groups else ["all", *args.groups.split(",")]
    missing = [name for name in names if name not in first.groups]
    if missing:
        raise SystemExit(f"{first.path}: no group {', '.join(missing)} (it has {', '.join(first.groups)})")

    means = {  # over each group's scored faces, as the reports' own group means
        label: {
            name: row["nme"]
            for name, row in nme_by_group(
                torch.from_numpy(t.nme), {name: torch.from_numpy(t.groups[name]) for name in names}
            ).items()
        }
        for label, t in tables.items()
    }
    counts = {name: int(first.groups[name].sum()) for name in names}
    print("| model | " + " | ".join(f"{name} ({counts[name]})" for name in names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, row in means.items():
        print(
            f"| {label} | " + " | ".join(f"{row[name]:.4f}" if name in row else "-" for name in names) + " |"
        )

    pairs = []
    print("\n| B - A | group | faces | mean difference | SE | diff / SE | B better on % of faces |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for a, b in itertools.combinations(tables, 2):
        for name in names:
            member = first.groups[name]
            if member.sum() < 2:
                continue
            d = paired_difference(tables[a].nme[member], tables[b].nme[member])
            pairs.append({"a": a, "b": b, "group": name, **d})
            ratio = d["mean"] / d["se"] if d["se"] else 0.0
            print(
                f"| {b} - {a} | {name} | {int(d['faces'])} | {d['mean']:+.5f} | {d['se']:.5f} | {ratio:+.1f} "
                f"| {100 * d['b_better']:.0f} |"
            )
    result = {"reports": {label: str(t.path) for label, t in tables.items()}, "means": means, "pairs": pairs}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
