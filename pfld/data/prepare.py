"""Data preparation: crop every face once, store each split compactly, describe it in a manifest.

Re-running with the same settings does nothing; an interrupted run resumes from its last finished
shard; a face whose annotation or photo is bad is reported (file and reason), skipped and counted.
The command line is `python -m data` (see `pfld.cli.data`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pfld.data.attributes import FACE_CLASSES, PoseThresholds, class_memberships
from pfld.data.cache import BOX_SOURCES, FaceCache, border_for, crop_record, faces_from_crops
from pfld.data.records import FaceRecord
from pfld.data.schemes import LandmarkScheme
from pfld.data.store import is_prepared, load_faces, save_faces
from pfld.io.atomic import atomic_save, atomic_write_text

MANIFEST_FILE = "manifest.json"
SKIPPED_FILE = "skipped.json"
FORMAT_VERSION = 1

#: Reads one split's annotations; bad entries go to the callback (message) and are skipped.
SplitReader = Callable[[Callable[[str], None]], list[FaceRecord]]


@dataclass(frozen=True)
class CropPolicy:
    """How faces are cut (see `pfld.data.crop`): the square of ``crop_scale`` x the longer side of the
    face box (the landmarks' box, or the data set's own box), stored ``margin`` times larger so that
    augmentation has room, with the policy crop ``crop_size`` pixels wide."""

    crop_size: int = 112
    crop_scale: float = 1.2
    margin: float = 1.5
    box_source: str = "landmarks"

    def __post_init__(self) -> None:
        if self.crop_size < 16:
            raise ValueError(f"crop_size must be at least 16 pixels, got {self.crop_size}")
        if not self.crop_scale > 0:
            raise ValueError(f"crop_scale must be positive, got {self.crop_scale}")
        if self.margin < 1.0:
            raise ValueError(f"margin must be at least 1 (no border), got {self.margin}")
        if self.box_source not in BOX_SOURCES:
            raise ValueError(f"box_source must be one of {BOX_SOURCES}, got {self.box_source!r}")

    @property
    def border(self) -> int:
        return border_for(self.crop_size, self.margin)


def prepare_split(
    records: Sequence[FaceRecord],
    folder: Path,
    scheme: LandmarkScheme,
    policy: CropPolicy,
    thresholds: PoseThresholds = PoseThresholds(),
    shard_size: int = 512,
    workers: int = 2,
    description: str = "preparing",
) -> tuple[FaceCache, list[str]]:
    """Crop ``records`` into ``folder`` shard by shard (resumable), then write the split's two files.

    Returns the prepared faces and the messages of the faces that were skipped.
    """
    if not records:
        raise ValueError(f"{folder}: the split has no faces")
    parts = folder / ".parts"
    parts.mkdir(parents=True, exist_ok=True)
    chunks = [records[i : i + shard_size] for i in range(0, len(records), shard_size)]
    kept_records: list[FaceRecord] = []
    crops: list[tuple[np.ndarray, np.ndarray]] = []
    skipped: list[str] = []
    with tqdm(total=len(records), desc=description, unit="face") as bar:
        for number, chunk in enumerate(chunks):
            part = parts / f"part-{number:05d}.npz"
            shard = _load_shard(part, chunk)
            if shard is None:
                shard = _crop_shard(chunk, policy, workers, bar)
                _save_shard(part, chunk, *shard)
            else:
                bar.update(len(chunk))
            images, landmarks, kept, messages = shard
            kept_records += [chunk[int(i)] for i in kept]
            crops += list(zip(images, landmarks, strict=True))
            skipped += messages
    if not kept_records:
        raise ValueError(f"{folder}: none of the {len(records)} faces could be prepared: {skipped[:3]}")
    faces = faces_from_crops(kept_records, crops, policy.crop_size, policy.border, scheme)
    faces = replace(faces, crop_scale=policy.crop_scale, box_source=policy.box_source)
    save_faces(faces, folder, class_memberships(faces, thresholds))
    shutil.rmtree(parts)
    return faces, skipped


def _crop_shard(
    chunk: Sequence[FaceRecord], policy: CropPolicy, workers: int, bar: tqdm
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    def crop(record: FaceRecord) -> tuple[np.ndarray, np.ndarray] | str:
        try:
            return crop_record(record, policy.crop_size, policy.border, policy.crop_scale, policy.box_source)
        except (OSError, ValueError) as error:
            return str(error)
        finally:
            bar.update(1)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(crop, chunk))
    kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
    side = policy.crop_size + 2 * policy.border
    images = np.stack([results[i][0] for i in kept]) if kept else np.zeros((0, side, side, 3), np.uint8)
    k = chunk[0].num_points
    landmarks = np.stack([results[i][1] for i in kept]) if kept else np.zeros((0, k, 2), np.float32)
    messages = [r for r in results if isinstance(r, str)]
    return images, landmarks.astype(np.float32), np.asarray(kept, dtype=np.int64), messages


def _save_shard(
    path: Path,
    chunk: Sequence[FaceRecord],
    images: np.ndarray,
    landmarks: np.ndarray,
    kept: np.ndarray,
    messages: list[str],
) -> None:
    sources = np.array([r.source or str(r.image_path) for r in chunk], dtype=str)
    atomic_save(
        path,
        lambda handle: np.savez(
            handle,
            images=images,
            landmarks=landmarks,
            kept=kept,
            messages=np.array(messages, dtype=str),
            sources=sources,
        ),
    )


def _load_shard(
    path: Path, chunk: Sequence[FaceRecord]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None:
    """A finished shard from an interrupted run, if it was made from these same records."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            sources = [str(s) for s in data["sources"]]
            if sources != [r.source or str(r.image_path) for r in chunk]:
                return None
            return data["images"], data["landmarks"], data["kept"], [str(m) for m in data["messages"]]
    except (OSError, KeyError, ValueError):
        return None


def prepare_dataset(
    out: str | Path,
    splits: Mapping[str, SplitReader],
    scheme: LandmarkScheme,
    policy: CropPolicy = CropPolicy(),
    source: Mapping[str, Any] | None = None,
    thresholds: PoseThresholds = PoseThresholds(),
    force: bool = False,
    shard_size: int = 512,
    workers: int = 2,
) -> dict[str, Any]:
    """Prepare every split of a data set under ``out`` and write ``out/manifest.json``; returns it.

    ``source`` describes where the annotations came from (format, root folder): with the scheme, the
    policy and the thresholds it makes up the settings, and a run with the same settings as the
    manifest's is a no-op. Different settings are refused unless ``force`` (which prepares again).
    """
    if not splits:
        raise ValueError("no splits to prepare")
    out = Path(out)
    settings = {
        "scheme": scheme.name,
        "num_points": scheme.num_points,
        "crop_policy": asdict(policy),
        "pose_classes": asdict(thresholds),
        "source": dict(source or {}),
        "splits": sorted(splits),
    }
    manifest_path = out / MANIFEST_FILE
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    if previous is not None and previous.get("settings") != settings and not force:
        raise ValueError(
            f"{manifest_path}: prepared with other settings "
            f"({_difference(previous.get('settings', {}), settings)}); "
            "use --force to prepare again, or another --out folder"
        )
    finished = previous is not None and previous.get("complete") and all(is_prepared(out / s) for s in splits)
    if finished and not force:
        print(f"{out}: already prepared ({_counts(previous)} faces); nothing to do")
        return previous
    if force:
        for split in splits:
            shutil.rmtree(out / split, ignore_errors=True)

    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "complete": False,
        "settings": settings,
        "splits": {},
        "skipped": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")  # marks this run's settings
    started = time.time()
    for split, read in splits.items():
        folder = out / split
        if is_prepared(folder) and (folder / SKIPPED_FILE).is_file():  # finished before an interruption
            faces, problems = load_faces(folder), json.loads((folder / SKIPPED_FILE).read_text())
            print(f"{folder}: already prepared ({len(faces)} faces)")
        else:
            problems = []
            try:
                records = read(problems.append)
            except ValueError as error:  # e.g. every entry bad: say why, with the first one's problem
                raise ValueError(f"{error}, e.g. {problems[0]}" if problems else str(error)) from error
            faces, skipped = prepare_split(
                records,
                folder,
                scheme,
                policy,
                thresholds,
                shard_size=shard_size,
                workers=workers,
                description=f"preparing {split}",
            )
            problems += skipped
            atomic_write_text(folder / SKIPPED_FILE, json.dumps(problems, indent=1) + "\n")
        manifest["splits"][split] = split_summary(faces, thresholds) | {"skipped": len(problems)}
        manifest["skipped"] += [{"split": split, "problem": p} for p in problems]
    manifest["complete"] = True
    manifest["seconds"] = round(time.time() - started, 1)
    manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    _print_summary(out, manifest)
    return manifest


def split_summary(faces: FaceCache, thresholds: PoseThresholds = PoseThresholds()) -> dict[str, Any]:
    """Counts for the manifest: faces, identities, faces per class, unknown poses, labelled points."""
    classes = class_memberships(faces, thresholds)
    return {
        "faces": len(faces),
        "identities": len(set(faces.identities.tolist())),
        "classes": {name: int(classes[:, c].sum()) for c, name in enumerate(FACE_CLASSES)},
        "flags": {name: int(faces.flags[:, f].sum()) for f, name in enumerate(faces.flag_names)},
        "pose_unknown": int(np.isnan(faces.angles).any(axis=1).sum()),
        "labelled_points": round(float(faces.visible.mean()), 4),
    }


def _counts(manifest: Mapping[str, Any]) -> str:
    return ", ".join(f"{split} {info['faces']}" for split, info in manifest["splits"].items())


def _difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)} -> {new.get(k)}" for k in keys)


def _print_summary(out: Path, manifest: Mapping[str, Any]) -> None:
    print(f"prepared {out}: {_counts(manifest)} faces in {manifest['seconds']} s")
    skipped = manifest["skipped"]
    if skipped:
        print(f"skipped {len(skipped)} faces (listed in {out / MANIFEST_FILE}), e.g.:")
        for entry in skipped[:5]:
            print(f"  [{entry['split']}] {entry['problem']}")
