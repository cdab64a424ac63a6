"""Paths as a person reads them in a command or a card: relative to the repository where they lie in it."""

from __future__ import annotations

from pathlib import Path


def shown_path(path: str | Path, root: str | Path | None) -> str:
    """``path`` relative to ``root`` (POSIX separators) when it is an absolute path under it; otherwise
    as given."""
    path = Path(path)
    if root is not None and path.is_absolute() and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return path.as_posix()


__all__ = ["shown_path"]
