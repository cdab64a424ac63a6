"""The standard 300W splits, read from a user's 300W folder of `.pts` + image pairs.

Layout expected under ``root`` (as in the iBUG download): `afw/`, `helen/trainset/`, `helen/testset/`,
`lfpw/trainset/`, `lfpw/testset/`, `ibug/`. Coordinates: 1-based in the files, 0-based in the records
(see `read_pts`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pfld.data.readers.common import OnError, existing_dir, identity_from_stem
from pfld.data.readers.pts import read_pts_folder
from pfld.data.records import FaceRecord

#: The subset folders of each split, in reading order.
SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenging": ("ibug",),
    "full": ("helen/testset", "lfpw/testset", "ibug"),
}

#: Subsets with one face per photo whose stems end in digits that are not a face number (`image_0001`).
WHOLE_STEM_SUBSETS: tuple[str, ...] = ("lfpw/trainset", "lfpw/testset")


def read_300w(
    root: str | Path, split: str, num_points: int = 68, on_error: OnError | None = None
) -> list[FaceRecord]:
    """The faces of a 300W split: `train` (3148 faces), `common` (554), `challenging` (135), `full` (689).

    Identities are `<subset>/<photo>`, e.g. `afw/1051618982` (from `1051618982_1`) or
    `lfpw/trainset/image_0001`, so they are unique per photo across subsets.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown 300W split {split!r}; expected one of {', '.join(SPLITS)}")
    root = existing_dir(root, "300W folder")
    missing = [root / subset for subset in SPLITS[split] if not (root / subset).is_dir()]
    if missing:
        names = ", ".join(str(folder) for folder in missing)
        raise FileNotFoundError(f"{root}: 300W split {split!r} needs the folder(s) {names}, not found")
    records = []
    for subset in SPLITS[split]:
        records += read_pts_folder(root / subset, num_points, _identity(subset), on_error)
    return records


def _identity(subset: str) -> Callable[[str], str]:
    """File stem -> `<subset>/<photo>`."""
    if subset in WHOLE_STEM_SUBSETS:
        return lambda stem: f"{subset}/{stem}"
    return lambda stem: f"{subset}/{identity_from_stem(stem)}"
