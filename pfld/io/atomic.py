"""Files that appear whole or not at all: checkpoints, prepared splits, manifests, exported models.

`atomic_write` has the writer fill a temporary file beside the target (same folder, so the final rename
is atomic on the same file system), flushes it to the disk, renames it over the target and flushes the
folder. A kill at any moment leaves the previous file (or none) plus at most a ``.<stem>.<pid>.tmp<suffix>``
that nothing reads and the next write of that name removes; a full disk raises an OSError that names
the file and says the previous one is intact.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

#: Errors of the disk itself (full, over quota, too large, failing), reported naming the file.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(temporary_path)``, then make its file ``path`` atomically (see the module)."""
    with staged(path) as temporary:
        write(temporary)


@contextmanager
def staged(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, for tools that look at it) to build the file in,
    checks included; made ``path`` atomically when the block ends without an error, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
            raise OSError(
                error.errno,
                f"{path}: could not write it ({error.strerror or error}); the previous one, if any, is intact",
            ) from error
        raise
    _fsync_folder(path.parent)


def atomic_save(path: str | Path, save: Callable[[BinaryIO], Any]) -> None:
    """`atomic_write` through an open binary file: ``save(handle)`` (``torch.save``, ``np.save``...);
    given a file rather than a name, numpy does not append ``.npy`` / ``.npz`` to the temporary name."""

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            save(handle)

    atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write` of a UTF-8 text file."""
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not possible on every system: then skipped)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


__all__ = ["atomic_save", "atomic_write", "atomic_write_text", "staged"]
