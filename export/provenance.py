"""Where a zoo model's training faces came from, for its card: the run's training folders and command, the
data's sources and licences, and for pseudo-labelled folders the teachers (pinned to the commit holding
their bytes) and the commands that remake them."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from pfld.io.paths import shown_path
from pfld.teacher.pseudo_label import MANIFEST_FILE, pseudo_label_command

ROOT = Path(__file__).resolve().parents[1]
#: Where each prepared data folder's faces come from and on what terms (../shared/data/README.md).
SOURCES = {
    "shared300w": "300W (Sagonas et al.; Helen and AFW photos): research use only",
    "ytf68": (
        "frames of the YouTube Faces data set with 68-point annotations from Udacity's P1_Facial_Keypoints "
        "repository (MIT); the frames are YouTube Faces', for non-commercial research"
    ),
    "mtfl5": "MTFL (Zhang et al., CUHK; LFW and web photos): research use only",
}
#: How each prepared data folder is made from ../shared/data (the card's first commands).
PREPARE = {
    "shared300w": "bash scripts/prepare_shared.sh",
    "ytf68": "bash scripts/prepare_shared.sh",
    "mtfl5": "python -m data mtfl --root ../shared/data/mtfl5",
}


@dataclass(frozen=True)
class TrainFolder:
    """One training folder of a run as the card names it (``data/...``), where it is, and the
    ``pseudo_labels.json`` manifest when a teacher labelled it."""

    name: str
    path: Path
    manifest: dict[str, Any] | None = None

    @property
    def source(self) -> str:
        """The prepared folder its faces come from (``mtfl5`` for a pseudo-labelled MTFL split)."""
        if self.manifest is None:
            return self.name.split("/")[1] if self.name.startswith("data/") else self.name
        split = Path(self.manifest["split"])
        return split.parent.name if split.name in ("train", "test", "val") else split.name


def train_folders(run: Path) -> list[TrainFolder]:
    """The run's training folders (its ``.hydra/config.yaml``), with their pseudo-label manifests."""
    config = OmegaConf.load(run / ".hydra" / "config.yaml")
    splits = OmegaConf.to_container(config.data.train, resolve=False)
    data_dir = OmegaConf.select(config, "paths.data_dir", default=None, throw_on_resolution_failure=False)
    data_dir = Path(str(data_dir)) if data_dir and Path(str(data_dir)).is_dir() else ROOT / "data"
    folders = []
    for index, split in enumerate(splits):
        raw = str(split.get("folder", split))
        # the folder as the run resolved it (${paths.teacher_dir}/... too), named under data/ when it is there
        folder = OmegaConf.select(config, f"data.train[{index}].folder", throw_on_resolution_failure=False)
        path = Path(str(folder)) if folder else Path(raw.replace("${paths.data_dir}", str(data_dir)))
        if path.resolve().is_relative_to(data_dir.resolve()):
            name = (Path("data") / path.resolve().relative_to(data_dir.resolve())).as_posix()
        else:
            name = raw.replace("${paths.data_dir}", "data")
        manifest = path / MANIFEST_FILE
        folders.append(
            TrainFolder(name, path, json.loads(manifest.read_text()) if manifest.is_file() else None)
        )
    return folders


def train_command(run: Path) -> str:
    """The ``python train.py ...`` that made the run, from its ``.hydra/overrides.yaml`` (the settings that
    only pick threads, workers, folders or the checkpoint a run resumed from are left out: they do not
    change the model). Each setting is quoted where a shell would read it otherwise (``[4,1,1]`` is a glob
    pattern), so the command pastes as it is."""
    overrides = OmegaConf.load(run / ".hydra" / "overrides.yaml")
    local = ("cpu.threads=", "data.num_workers=", "hydra.", "logger=", "tags=", "paths.", "ckpt_path=")
    return "python train.py " + shlex.join(str(o) for o in overrides if not str(o).startswith(local))


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False)


def committed_bytes(commit: str, path: Path) -> bytes | None:
    """The bytes of ``path`` (under the repository) in ``commit``; None when that commit has no such file
    (or there is no git)."""
    if not path.is_relative_to(ROOT):
        return None
    try:
        shown = _git("show", f"{commit}:{path.relative_to(ROOT).as_posix()}")
    except OSError:  # no git
        return None
    return shown.stdout if shown.returncode == 0 else None


def committed_version(path: Path, sha256: str) -> str | None:
    """The short hash of the newest commit in which ``path`` (under the repository) held the bytes whose
    SHA-256 is ``sha256``; None when no commit did (or there is no git)."""
    if not path.is_relative_to(ROOT):
        return None
    try:
        commits = _git("log", "--format=%h", "--", path.relative_to(ROOT).as_posix()).stdout.decode().split()
    except OSError:  # no git
        return None
    for commit in commits:
        blob = committed_bytes(commit, path)
        if blob is not None and hashlib.sha256(blob).hexdigest() == sha256:
            return commit
    return None


def teacher_lines(folder: TrainFolder) -> tuple[str, list[str]]:
    """A pseudo-labelled folder's card bullet and the commands that remake it: each teacher file pinned
    to the commit that holds its exact bytes and restored from it (a zoo model may since have been
    replaced by this very student)."""
    manifest = folder.manifest or {}
    digests = manifest.get("checkpoint_sha256") or [None] * len(manifest["checkpoints"])
    named, restore, models = [], [], []
    for path, digest in zip(map(Path, manifest["checkpoints"]), digests, strict=True):
        shown = shown_path(path, ROOT)
        commit = committed_version(path, digest) if digest else None
        if commit:
            named.append(f"`{shown}` of commit {commit}")
            models.append(f"teacher-{path.parent.name}{path.suffix}")
            restore.append(f"git show {commit}:{shown} > {models[-1]}")
        else:
            why = f"sha256 {digest[:12]}, in no commit" if digest else "its version was not recorded"
            named.append(f"`{shown}` ({why})")
            models.append(shown)
    source = shown_path(manifest["split"], ROOT)
    teachers = named[0] if len(named) == 1 else f"an ensemble of {len(named)}: " + ", ".join(named)
    bullet = (
        f"- `{folder.name}`: {manifest['kept']:,} of the {manifest['faces']:,} faces of `{source}` "
        f"({manifest['dropped']} dropped: their annotated points lay on average more than "
        f"{manifest['threshold']:g} inter-ocular distances from the teacher's), the points they lack "
        f"pseudo-labelled by {teachers}."
    )
    return bullet, [*restore, pseudo_label_command(manifest, folder.path, models, ROOT)]


__all__ = [
    "PREPARE",
    "SOURCES",
    "TrainFolder",
    "committed_bytes",
    "committed_version",
    "teacher_lines",
    "train_command",
    "train_folders",
]
