"""What every reader shares: image suffixes, identities from file names, checks, and the skip policy.

A reader either raises on the first bad entry (``on_error=None``) or reports each bad entry as one
message through ``on_error(message)``, skips it and reads on. A file that yields no face at all
raises either way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pfld.data.records import FaceRecord

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")

#: Called with one message (naming the file and line) per bad entry, which is then skipped.
OnError = Callable[[str], None]

#: Errors that make one entry bad (the FaceRecord checks raise ValueError).
ENTRY_ERRORS = (ValueError, FileNotFoundError)


def identity_from_stem(stem: str) -> str:
    """`<photo or person>_<NN>` -> `<photo or person>` (300W `<photo>_<face>`, ytf `<name>_<frame>`)."""
    head, sep, tail = stem.rpartition("_")
    return head if sep and tail.isdigit() else stem


def skip_or_raise(error: Exception, on_error: OnError | None) -> None:
    """Raise ``error`` when there is no ``on_error``; else report its message and return (skip)."""
    if on_error is None:
        raise error
    on_error(str(error))


def require_faces(records: list[FaceRecord], where: str | Path, skipped: int) -> list[FaceRecord]:
    """``records`` unless empty: an annotation source without a single good face is an error."""
    if not records:
        detail = f" ({skipped} bad entries skipped)" if skipped else ""
        raise ValueError(f"{where}: no faces read{detail}")
    return records


def check_points(landmarks: np.ndarray, num_points: int | None, where: str, missing: bool = False) -> None:
    """Point count (expected vs found) and finiteness; NaN is allowed only where ``missing``."""
    if num_points is not None and len(landmarks) != num_points:
        raise ValueError(f"{where}: expected {num_points} points, found {len(landmarks)}")
    if np.isinf(landmarks).any():
        raise ValueError(f"{where}: infinite coordinates")
    if not missing and np.isnan(landmarks).any():
        raise ValueError(f"{where}: NaN coordinates (this format has no missing points)")


def existing_dir(folder: str | Path, what: str = "folder") -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} not found")
    return folder


def existing_file(path: str | Path, what: str = "file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    return path


def image_beside(annotation: Path) -> Path:
    """The image with ``annotation``'s stem and one of `IMAGE_SUFFIXES` next to it."""
    for suffix in IMAGE_SUFFIXES:
        image = annotation.with_suffix(suffix)
        if image.exists():
            return image
    raise FileNotFoundError(f"{annotation}: no image beside it (looked for {', '.join(IMAGE_SUFFIXES)})")


def read_text(path: Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; another encoding is a ValueError naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); save the {what} as UTF-8"
        ) from None


def parse_float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None


def is_number(text: str) -> bool:
    """Whether ``float(text)`` parses (NaN and inf included)."""
    try:
        float(text)
    except ValueError:
        return False
    return True
