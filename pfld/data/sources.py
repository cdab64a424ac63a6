"""Where a split's faces come from: sources (a reader's annotations, cropped in memory, or a prepared
split), gathered and checked against the model's scheme and crop (`gather`); the mapping for faces of
another scheme (`mapping_for`); names and masks of the validation sources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pfld.data.cache import FaceCache, build_face_cache
from pfld.data.records import FaceRecord
from pfld.data.schemes import LandmarkScheme
from pfld.data.schemes.mapping import SchemeMapping, find_mapping

#: A source of faces: a reader returning annotations (prepared here, in memory) or a prepared split
#: (`pfld.data.store.load_faces`), with its arguments bound.
FaceSource = Callable[[], "list[FaceRecord] | FaceCache"]

#: Bound arguments that name a source, first found wins (see `source_names`).
SOURCE_NAME_KEYS: tuple[str, ...] = ("split", "folder", "csv_path", "json_path", "annotation_file")


def mapping_for(
    faces: FaceCache, scheme: LandmarkScheme, mapping_files: Sequence[str | Path] = ()
) -> SchemeMapping | None:
    """None for faces of the model's scheme, else the mapping from theirs (a listed file first).
    Faces prepared under another name with the same number of points and no mapping (a user's own
    file for the same points) are taken as they are, as before schemes were recorded."""
    if faces.scheme in ("", scheme.name):
        return None
    try:
        return find_mapping(faces.scheme, scheme.name, mapping_files)
    except ValueError as error:
        if faces.num_points == scheme.num_points:
            print(
                f"note: train faces from {faces.sources[0]} were prepared as {faces.scheme!r} and are "
                f"read as {scheme.name!r} (both {faces.num_points} points, no mapping between them)"
            )
            return None
        raise ValueError(
            f"train faces prepared from {faces.sources[0]} are {faces.scheme!r} faces but the model's "
            f"scheme is {scheme.name!r}: {error}"
        ) from None


def gather(
    sources: Sequence[FaceSource],
    split: str,
    scheme: LandmarkScheme,
    input_size: int,
    crop_scale: float,
    margin: float,
    other_schemes: bool = False,
) -> list[FaceCache]:
    """The faces of each source of a split (data.<split>), at ``input_size``, in source order: a reader's
    annotations are cropped here in memory, a prepared split is checked against the scheme and crop
    scale (faces of other schemes only for training: ``other_schemes``) and resized."""
    caches = []
    for source in sources:
        faces = source()
        if not len(faces):
            raise ValueError(
                f"the {split} split is empty: {describe_source(source)} gave no faces; "
                f"check data.{split} and the files it names"
            )
        if isinstance(faces, FaceCache):
            caches.append(check_prepared(faces, split, scheme, input_size, crop_scale, other_schemes))
            continue
        for record in faces:
            if record.num_points != scheme.num_points:
                raise ValueError(
                    f"{record.source}: {record.num_points} points, but the scheme "
                    f"{scheme.name!r} has {scheme.num_points}; set data.scheme.name_or_path "
                    "and data.num_points to the data's scheme"
                )
        caches.append(
            build_face_cache(
                faces,
                input_size,
                scheme,
                crop_scale=crop_scale,
                margin=margin,
                description=f"preparing {split} faces",
            )
        )
    if not caches:
        raise ValueError(f"the {split} split is empty: data.{split} lists no source")
    return caches


def check_prepared(
    faces: FaceCache,
    split: str,
    scheme: LandmarkScheme,
    input_size: int,
    crop_scale: float,
    other_schemes: bool = False,
) -> FaceCache:
    """A prepared split's faces checked against the model's scheme and crop scale, resized to
    ``input_size``."""
    where = f"{split} faces prepared from {faces.sources[0]}"
    foreign = faces.scheme not in ("", scheme.name) and faces.num_points != scheme.num_points
    if foreign and not other_schemes:
        raise ValueError(
            f"{where}: {faces.num_points}-point {faces.scheme!r} faces, but the model's scheme "
            f"{scheme.name!r} has {scheme.num_points} points; {split} faces must be of the "
            "model's scheme (only training faces are mapped from other schemes)"
        )
    if faces.num_points != scheme.num_points and not foreign:
        raise ValueError(
            f"{where}: {faces.num_points} points, but the scheme {scheme.name!r} has {scheme.num_points}"
        )
    if faces.crop_scale != crop_scale:
        raise ValueError(
            f"{where}: prepared with crop_scale {faces.crop_scale} but data.crop_scale is "
            f"{crop_scale}; set data.crop_scale={faces.crop_scale} or prepare again"
        )
    return faces.resized(input_size)


def source_names(sources: Sequence[FaceSource]) -> list[str]:
    """A unique name for each source, from its bound arguments: a reader's ``split`` (300W's common,
    WFLW's test), the name of a prepared split's ``folder``, the stem of an annotation file, else
    ``val<i>``; repeats get ``_2``, ``_3``..."""
    names: list[str] = []
    for index, source in enumerate(sources):
        keywords = getattr(source, "keywords", {}) or {}
        location = next((keywords[k] for k in SOURCE_NAME_KEYS if k in keywords), None)
        base = Path(str(location)).stem if location is not None else f"val{index}"
        name, repeat = base, 1
        while name in names:
            repeat += 1
            name = f"{base}_{repeat}"
        names.append(name)
    return names


def describe_source(source: FaceSource) -> str:
    """Where a source reads from, for messages: its bound file or folder, else its name."""
    keywords = getattr(source, "keywords", {}) or {}
    location = next((keywords[k] for k in SOURCE_NAME_KEYS if k in keywords), None)
    if location is not None:
        return str(location)
    target = getattr(source, "func", source)
    return getattr(target, "__qualname__", repr(target))


def subset_masks(names: Sequence[str], sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """name -> (sum(sizes),) bool, True for the faces of that consecutive block."""
    total, start, masks = sum(sizes), 0, {}
    for name, size in zip(names, sizes, strict=True):
        mask = np.zeros(total, dtype=bool)
        mask[start : start + size] = True
        masks[name] = mask
        start += size
    return masks
