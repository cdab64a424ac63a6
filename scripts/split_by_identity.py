"""Cut a prepared split in two with no identity (person or photo) on both sides.

    python scripts/split_by_identity.py data/shared300w/val --out data/afw_halves/fit data/afw_halves/held \
        --fraction 0.5 --seed 0

The second folder gets about ``--fraction`` of the identities (`pfld.data.splits.split_by_identity`),
the first the rest; both are prepared splits like any other (images, points, angles, classes, point
sources kept). The final-fit check (docs/better_models.md) trains with one half of AFW and scores the
other.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pfld.data.splits import split_by_identity
from pfld.data.store import ANNOTATIONS_FILE, load_faces, save_faces


def split_folder(split: Path, out: tuple[Path, Path], fraction: float, seed: int) -> dict[str, int]:
    """Write the two identity-disjoint parts of ``split``; returns their face and identity counts."""
    faces = load_faces(split)
    with np.load(split / ANNOTATIONS_FILE) as data:
        classes = data.get("classes")
    for folder in out:
        if folder.resolve() == split.resolve():
            raise ValueError(f"{folder}: would overwrite the split being cut; choose another --out")
    parts = split_by_identity(faces.identities, fraction, seed)
    summary = {}
    for folder, indices in zip(out, parts, strict=True):
        save_faces(faces.subset(indices), folder, None if classes is None else classes[indices])
        summary[str(folder)] = len(indices)
        summary[f"{folder} identities"] = len(set(faces.identities[indices]))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split", type=Path, help="a prepared split folder")
    parser.add_argument("--out", type=Path, nargs=2, required=True, metavar=("REST", "HELD"))
    parser.add_argument("--fraction", type=float, default=0.5, help="share of identities in HELD")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(split_folder(args.split, tuple(args.out), args.fraction, args.seed), indent=1))


if __name__ == "__main__":
    main()
