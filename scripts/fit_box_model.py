"""Fit a scheme mapping's box model: where to crop a face that has only the mapped points.

    python scripts/fit_box_model.py --mapping five_point-ibug68 \
        --fit data/shared300w/train data/ytf68/train --check data/shared300w/val data/ytf68/test [--write]

``--fit``: prepared folders of the mapping's target scheme; their complete faces train the model
(`pfld.data.mixed.fit_box_model`). ``--check``: other such folders; each face's source points are
projected through the mapping (e.g. eye centres from the six eye points), its box estimated from them
and compared with its true landmark box: the crop centre's error and the ratio of crop sides, both over
the true crop side. ``--write`` puts the model into the mapping file (its ``box`` key) with a comment
giving these figures.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from pfld.data.crop import landmark_box
from pfld.data.mixed import estimate_box, fit_box_model
from pfld.data.schemes.mapping import SchemeMapping, load_mapping
from pfld.data.store import load_faces


def complete_shapes(folders: list[str]) -> np.ndarray:
    shapes = np.concatenate([load_faces(f).landmarks for f in folders])
    return shapes[~np.isnan(shapes).any(axis=(1, 2))]


def box_errors(shapes: np.ndarray, mapping: SchemeMapping) -> dict[str, float]:
    """Centre error and side ratio of the estimated crop box against the true one, over all faces."""
    centre, ratio = [], []
    for shape in shapes:
        true = landmark_box(shape)
        guess = estimate_box(mapping.project(shape), mapping)
        side_true = (true[2:] - true[:2]).max()
        centre.append(np.linalg.norm((guess[:2] + guess[2:]) / 2 - (true[:2] + true[2:]) / 2) / side_true)
        ratio.append((guess[2:] - guess[:2]).max() / side_true)
    centre, ratio = np.array(centre), np.array(ratio)
    return {
        "faces": len(shapes),
        "centre_error_median": round(float(np.median(centre)), 4),
        "centre_error_p95": round(float(np.percentile(centre, 95)), 4),
        "side_ratio_median": round(float(np.median(ratio)), 3),
        "side_ratio_p5": round(float(np.percentile(ratio, 5)), 3),
        "side_ratio_p95": round(float(np.percentile(ratio, 95)), 3),
    }


def box_yaml(mapping: SchemeMapping, comment: list[str]) -> str:
    lines = [f"# {line}" for line in comment] + ["box:", "  reference:"]
    lines += [f"    - [{x:.5f}, {y:.5f}]" for x, y in mapping.box_reference]
    lines += ["  regression:"]
    lines += ["    - [" + ", ".join(f"{v:.6f}" for v in row) + "]" for row in mapping.box_regression]
    return "\n".join(lines) + "\n"


def write_box(path: Path, text: str) -> None:
    """Replace the file's box section (everything from its first comment line above ``box:``) or append."""
    lines = path.read_text().splitlines(keepends=True)
    if "box:\n" in lines:
        end = lines.index("box:\n")
        while end > 0 and lines[end - 1].startswith("# box model"):
            end -= 1
        lines = lines[:end]
    path.write_text("".join(lines) + text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mapping", default="five_point-ibug68", help="<source>-<target> (shipped)")
    parser.add_argument("--fit", nargs="+", required=True, help="prepared folders to fit on")
    parser.add_argument("--check", nargs="*", default=[], help="prepared folders to check on")
    parser.add_argument("--write", action="store_true", help="write the model into the mapping file")
    args = parser.parse_args()
    source, target = args.mapping.split("-")
    mapping = load_mapping(source, target)
    shapes = complete_shapes(args.fit)
    reference, regression = fit_box_model(shapes, mapping)
    mapping = replace(mapping, box_reference=reference, box_regression=regression)
    comment = [
        f"box model (scripts/fit_box_model.py): fitted on {len(shapes)} faces of {', '.join(args.fit)}"
    ]
    for folder in args.check:
        errors = box_errors(complete_shapes([folder]), mapping)
        comment.append(f"box model on {folder}: {json.dumps(errors)}")
    print("\n".join(comment))
    if args.write:
        write_box(Path(mapping.where), box_yaml(mapping, comment))
        print(f"wrote the box model into {mapping.where}")


if __name__ == "__main__":
    main()
