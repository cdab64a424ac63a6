"""What an exported model says about itself: `metadata_props` keys any program can read without pfld.

Every key starts with ``pfld.``; values are strings, JSON where they are not plain text (``"112"``,
``"[0.485, 0.456, 0.406]"``). The required keys describe how to make the input and read the output:

- ``pfld.input_size`` (int): the side S of the square input.
- ``pfld.mean``, ``pfld.std`` (3 floats each): the input is ``(RGB pixel / 255 - mean) / std``, NCHW.
- ``pfld.crop_scale`` (float): the crop is the square centred on the centre of the face's landmark box,
  with side ``crop_scale`` x the box's longer side (see `pfld.data.crop`).
- ``pfld.num_landmarks`` (int): K; ``pfld.scheme`` (str): the landmark scheme's name (e.g. ``ibug68``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

PREFIX = "pfld."
#: Keys every exported model carries (with the prefix), so it can be used without its training config.
REQUIRED_KEYS: tuple[str, ...] = tuple(
    PREFIX + key for key in ("input_size", "mean", "std", "crop_scale", "num_landmarks", "scheme")
)
INPUT_TEXT = "image: (N, 3, S, S) float32, RGB, (pixel / 255 - pfld.mean) / pfld.std"
LANDMARKS_TEXT = (
    "landmarks: (N, K, 2) float32, x then y in [0, 1] of the crop: 0 is the outer edge of the crop's "
    "first pixel, 1 the outer edge of its last; the centre of pixel i is at (i + 0.5) / S"
)
POSE_TEXT = "pose: (N, 3) float32, yaw, pitch, roll in degrees (the auxiliary net's head pose)"
CROP_TEXT = (
    "square centred on the centre of the face's landmark box (x_min, y_min, x_max, y_max), side "
    "pfld.crop_scale x max(width, height), resized to S x S; outside the photo is black"
)


def model_metadata(description: Mapping[str, Any], with_pose: bool = False) -> dict[str, Any]:
    """The ``pfld.*`` metadata of a model from its checkpoint's data description (see
    `pfld.training.data_description`): the required keys, the NME's normalisation, and one line of
    text each on the input, the crop and every output."""
    missing = [
        key
        for key in ("input_size", "mean", "std", "crop_scale", "num_points", "scheme")
        if key not in description
    ]
    if missing:
        raise ValueError(f"the checkpoint's data description lacks {missing}")
    metadata = {
        PREFIX + "input_size": int(description["input_size"]),
        PREFIX + "mean": [float(v) for v in description["mean"]],
        PREFIX + "std": [float(v) for v in description["std"]],
        PREFIX + "crop_scale": float(description["crop_scale"]),
        PREFIX + "num_landmarks": int(description["num_points"]),
        PREFIX + "scheme": str(description["scheme"]),
        PREFIX + "normalization": list(description.get("normalization", [])),
        PREFIX + "normalization_mode": str(description.get("normalization_mode", "inter_ocular")),
        PREFIX + "input": INPUT_TEXT,
        PREFIX + "crop": CROP_TEXT,
        PREFIX + "landmarks": LANDMARKS_TEXT,
        PREFIX + "outputs": ["landmarks", "pose"] if with_pose else ["landmarks"],
    }
    if with_pose:
        metadata[PREFIX + "pose"] = POSE_TEXT
    return metadata


def check_metadata(metadata: Mapping[str, Any], input_size: int, num_landmarks: int) -> None:
    """Refuse metadata without `REQUIRED_KEYS` or whose size and point count differ from the model's."""
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"metadata lacks {missing}; an exported model must carry {list(REQUIRED_KEYS)}")
    for key, value in ((PREFIX + "input_size", input_size), (PREFIX + "num_landmarks", num_landmarks)):
        if metadata[key] != value:
            raise ValueError(f"metadata {key}={metadata[key]!r} but the model has {value}")
    for key in (PREFIX + "mean", PREFIX + "std"):
        if not (isinstance(metadata[key], Sequence) and len(metadata[key]) == 3):
            raise ValueError(f"metadata {key} must hold three floats (R, G, B), got {metadata[key]!r}")


def encode_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """ONNX `metadata_props` values: strings as they are, anything else (and strings that would
    parse as JSON, such as "42") JSON-encoded, so that `decode_metadata` inverts it exactly."""
    encoded = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata keys must be strings, got {key!r}")
        if isinstance(value, str) and not _parses_as_json(value):
            encoded[key] = value
            continue
        try:
            encoded[key] = json.dumps(value)
        except TypeError as error:
            raise ValueError(f"metadata {key!r} is not JSON-serialisable: {value!r}") from error
    return encoded


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of `encode_metadata` (tuples come back as lists)."""
    return {key: json.loads(value) if _parses_as_json(value) else value for key, value in props.items()}


def _parses_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
