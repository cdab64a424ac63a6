"""Prepared faces on disk: one split is a folder with two files that load in a blink.

images.npy        (N, S, S, 3) uint8 loose crops, memory-mapped on load (workers share the pages)
annotations.npz   landmarks (N, K, 2) float32 crop pixels (NaN = unlabelled), angles (N, 3) degrees
                  (NaN = unknown), classes (N, C) 0/1, identities, sources, flags (N, F) + flag_names,
                  crop_size, border, crop_scale, box_source, scheme (name; absent in older splits),
                  point_sources (N, K) uint8 and teacher (N, K, 2) float32 (only in pseudo-labelled
                  splits; see FaceCache)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pfld.data.cache import FaceCache

IMAGES_FILE = "images.npy"
ANNOTATIONS_FILE = "annotations.npz"


def is_prepared(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / IMAGES_FILE).is_file() and (folder / ANNOTATIONS_FILE).is_file()


def save_faces(faces: FaceCache, folder: str | Path, classes: np.ndarray | None = None) -> None:
    """Write a split; each file appears atomically (written under a temporary name, then renamed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save(folder / IMAGES_FILE, lambda path: np.save(path, faces.images))
    arrays = {
        "landmarks": faces.landmarks,
        "angles": faces.angles,
        "identities": faces.identities,
        "sources": faces.sources,
        "flags": faces.flags,
        "flag_names": np.array(faces.flag_names, dtype=str),
        "crop_size": np.array(faces.crop_size),
        "border": np.array(faces.border),
        "crop_scale": np.array(faces.crop_scale),
        "box_source": np.array(faces.box_source),
        "scheme": np.array(faces.scheme),
    }
    if faces.point_sources is not None:
        arrays["point_sources"] = faces.point_sources.astype(np.uint8)
    if faces.teacher is not None:
        arrays["teacher"] = faces.teacher.astype(np.float32)
    if classes is not None:
        arrays["classes"] = classes.astype(np.uint8)
    _atomic_save(folder / ANNOTATIONS_FILE, lambda path: np.savez(path, **arrays))


def load_faces(folder: str | Path, mmap: bool = True) -> FaceCache:
    """Read a split written by `save_faces` (or `python -m data ...`); images memory-mapped by default."""
    folder = Path(folder)
    if not is_prepared(folder):
        raise FileNotFoundError(
            f"{folder}: no prepared faces here (expected {IMAGES_FILE} and {ANNOTATIONS_FILE}); "
            "prepare the data set first, e.g. `python -m data wflw --root <WFLW folder>` (see data/README.md)"
        )
    try:
        images = np.load(folder / IMAGES_FILE, mmap_mode="r" if mmap else None)
        with np.load(folder / ANNOTATIONS_FILE) as data:
            return FaceCache(
                images=images,
                landmarks=data["landmarks"].astype(np.float32),
                angles=data["angles"].astype(np.float32),
                identities=data["identities"],
                sources=data["sources"],
                flags=data["flags"].astype(bool),
                flag_names=tuple(str(n) for n in data["flag_names"]),
                crop_size=int(data["crop_size"]),
                border=int(data["border"]),
                crop_scale=float(data["crop_scale"]),
                box_source=str(data["box_source"]),
                scheme=str(data["scheme"]) if "scheme" in data else "",
                point_sources=data.get("point_sources"),
                teacher=data.get("teacher"),
            )
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(
            f"{folder}: prepared faces are unreadable or incomplete ({error}); prepare again"
        ) from None


def _atomic_save(path: Path, write) -> None:
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(temporary)
    os.replace(temporary, path)
