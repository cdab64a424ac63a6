"""Prepared faces on disk: one split is a folder with two files that load in a blink.

images-<id>.npy   (N, S, S, 3) uint8 loose crops, memory-mapped on load (workers share the pages);
                  ``images.npy`` in splits written before the id
annotations.npz   images_file (the name of the images' file), landmarks (N, K, 2) float32 crop pixels (NaN = unlabelled), angles (N, 3) degrees
                  (NaN = unknown), classes (N, C) 0/1, identities, sources, flags (N, F) + flag_names,
                  crop_size, border, crop_scale, box_source, scheme (name; absent in older splits),
                  point_sources (N, K) uint8 and teacher (N, K, 2) float32 (only in pseudo-labelled
                  splits; see FaceCache)
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from pfld.data.cache import FaceCache
from pfld.io.atomic import atomic_save

IMAGES_FILE = "images.npy"
ANNOTATIONS_FILE = "annotations.npz"


def is_prepared(folder: str | Path) -> bool:
    """Whether ``folder`` holds a complete split: its annotations and the images file they name."""
    folder = Path(folder)
    if not (folder / ANNOTATIONS_FILE).is_file():
        return False
    try:
        return (folder / _images_file(folder)).is_file()
    except (OSError, ValueError, KeyError):
        return False


def _images_file(folder: Path) -> str:
    with np.load(folder / ANNOTATIONS_FILE) as data:
        return _images_name(data)


def _images_name(annotations: np.lib.npyio.NpzFile) -> str:
    """The images file the annotations name (``images.npy`` in splits written before the name)."""
    return str(annotations["images_file"]) if "images_file" in annotations else IMAGES_FILE


def save_faces(faces: FaceCache, folder: str | Path, classes: np.ndarray | None = None) -> None:
    """Write a split as one change: the images go to a new file first, then the annotations, which
    name it, replace the old ones atomically; only then are the old images removed. A kill or a full
    disk at any moment leaves the previous split (or none) loadable and whole, never new images with
    old annotations."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images_file = f"images-{uuid.uuid4().hex[:12]}.npy"
    atomic_save(folder / images_file, lambda handle: np.save(handle, faces.images))
    arrays = {
        "images_file": np.array(images_file),
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
    try:
        atomic_save(folder / ANNOTATIONS_FILE, lambda handle: np.savez(handle, **arrays))  # the commit
    except BaseException:
        (folder / images_file).unlink(missing_ok=True)
        raise
    for old in [folder / IMAGES_FILE, *folder.glob("images-*.npy")]:
        if old.name != images_file:
            old.unlink(missing_ok=True)


def load_faces(folder: str | Path, mmap: bool = True) -> FaceCache:
    """Read a split written by `save_faces` (or `python -m data ...`); images memory-mapped by default."""
    folder = Path(folder)
    if not is_prepared(folder):
        raise FileNotFoundError(
            f"{folder}: no prepared faces here (expected {ANNOTATIONS_FILE} and the images file it names); "
            "prepare the data set first, e.g. `python -m data wflw --root <WFLW folder>` (see data/README.md)"
        )
    try:
        with np.load(folder / ANNOTATIONS_FILE) as data:
            images = np.load(folder / _images_name(data), mmap_mode="r" if mmap else None)
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
