"""`ModelSpec`: the one description of a trained model, and its two stored forms.

A checkpoint keeps it as the ``data`` hyper-parameters (`ModelSpec.to_hparams` / `from_hparams`); an
exported model as ``pfld.*`` metadata any program can read without pfld (`to_metadata` /
`from_metadata`, strings in ONNX ``metadata_props`` through `encode_metadata` / `decode_metadata`).
The keys of both forms are file formats: they stay as they are (``num_points`` in a checkpoint,
``pfld.num_landmarks`` in a model file), so models exported or trained before keep working.

Metadata values are strings, JSON where they are not plain text (``"112"``,
``"[0.485, 0.456, 0.406]"``). The required keys describe how to make the input and read the output:

- ``pfld.input_size`` (int): the side S of the square input.
- ``pfld.mean``, ``pfld.std`` (3 floats each): the input is ``(RGB pixel / 255 - mean) / std``, NCHW;
  for a grey model (``pfld.channels`` 1) one float each, applied to the luma ``0.299 R + 0.587 G + 0.114 B``.
- ``pfld.crop_scale`` (float): the crop is the square centred on the centre of the face's landmark box,
  with side ``crop_scale`` x the box's longer side (see `pfld.data.crop`).
- ``pfld.num_landmarks`` (int): K; ``pfld.scheme`` (str): the landmark scheme's name (e.g. ``ibug68``).

``pfld.channels`` (int) is 1 for a grey model and absent for an RGB one (3), so RGB checkpoints and
files stay as they were and older ones read unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pfld.data.normalize import CHANNELS
from pfld.metrics import DEFAULT_NORMALIZATION, Normalization, resolve_normalization

PREFIX = "pfld."
#: Keys every exported model carries (with the prefix), so it can be used without its training config.
REQUIRED_KEYS: tuple[str, ...] = tuple(
    PREFIX + key for key in ("input_size", "mean", "std", "crop_scale", "num_landmarks", "scheme")
)
INPUT_TEXT = "image: (N, 3, S, S) float32, RGB, (pixel / 255 - pfld.mean) / pfld.std"
GREY_INPUT_TEXT = (
    "image: (N, 1, S, S) float32, grey = 0.299 R + 0.587 G + 0.114 B of the RGB pixel, "
    "(grey / 255 - pfld.mean) / pfld.std"
)
LANDMARKS_TEXT = (
    "landmarks: (N, K, 2) float32, x then y in [0, 1] of the crop: 0 is the outer edge of the crop's "
    "first pixel, 1 the outer edge of its last; the centre of pixel i is at (i + 0.5) / S"
)
POSE_TEXT = "pose: (N, 3) float32, yaw, pitch, roll in degrees (the auxiliary net's head pose)"
CROP_TEXT = (
    "square centred on the centre of the face's landmark box (x_min, y_min, x_max, y_max), side "
    "pfld.crop_scale x max(width, height), resized to S x S; outside the photo is black"
)
#: The ``coordinates`` line a checkpoint's description carries (for a person reading it).
COORDINATES_TEXT = "x, y in [0, 1] of the square crop (see pfld.data.crop)"
#: The keys a checkpoint's ``data`` hyper-parameters must have.
HPARAM_KEYS: tuple[str, ...] = ("input_size", "crop_scale", "mean", "std", "scheme", "num_points")


@dataclass(frozen=True)
class ModelSpec:
    """What a trained landmark model takes and gives.

    Attributes:
        scheme: the landmark scheme's name (`pfld.data.schemes`); ``num_points`` K its point count.
        input_size: side S of the square input crop in pixels.
        crop_scale: the crop's side over the longer side of the face's landmark box.
        mean, std: the input is ``(RGB pixel / 255 - mean) / std``; one value each for a grey model.
        normalization: the NME's pair of point indices (outer eye corners, or pupils for inter_pupil).
        normalization_mode: what divides the NME: "inter_ocular", "inter_pupil" or "box".
        with_pose: whether the model also gives yaw, pitch, roll (radians in Python, degrees in files).
        channels: the input's channels: 3 (RGB) or 1 (grey: the luma of the RGB crop, see
            `pfld.data.normalize.grey`); ``mean`` and ``std`` hold one value per channel.
    """

    scheme: str
    num_points: int
    input_size: int
    crop_scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalization: tuple[int, int] | None = None
    normalization_mode: str = DEFAULT_NORMALIZATION
    with_pose: bool = False
    channels: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.channels, bool) or self.channels not in CHANNELS:
            raise ValueError(f"channels must be 3 (RGB) or 1 (grey), got {self.channels!r}")
        object.__setattr__(self, "channels", int(self.channels))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != self.channels:
                raise ValueError(f"{name} must hold {_values(self.channels)}, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.normalization is not None:
            object.__setattr__(self, "normalization", tuple(int(i) for i in self.normalization))

    @property
    def nme_normalization(self) -> Normalization:
        """The ``normalization`` argument of `pfld.metrics.nme`: the point pair, or "box"."""
        return resolve_normalization(self.normalization_mode, self.normalization)

    def with_pose_output(self, with_pose: bool) -> ModelSpec:
        return replace(self, with_pose=bool(with_pose))

    # -- a checkpoint's ``data`` hyper-parameters --------------------------------------------------------
    @classmethod
    def from_hparams(
        cls, data: Mapping[str, Any], with_pose: bool = False, where: str = "checkpoint"
    ) -> ModelSpec:
        """From a checkpoint's ``data`` hyper-parameters (older ones lack ``normalization_mode`` and
        ``channels``: RGB)."""
        missing = [key for key in HPARAM_KEYS if key not in data]
        if missing:
            raise ValueError(f"{where}: the model description (data hyper-parameters) lacks {missing}")
        return cls(
            scheme=str(data["scheme"]),
            num_points=int(data["num_points"]),
            input_size=int(data["input_size"]),
            crop_scale=float(data["crop_scale"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            normalization=tuple(data["normalization"]) if data.get("normalization") is not None else None,
            normalization_mode=str(data.get("normalization_mode", DEFAULT_NORMALIZATION)),
            with_pose=with_pose,
            channels=int(data.get("channels", 3)),
        )

    def to_hparams(self) -> dict[str, Any]:
        """The checkpoint form (``with_pose`` is the model config's business, not kept here); ``channels``
        only for a grey model."""
        hparams = {
            "input_size": self.input_size,
            "crop_scale": self.crop_scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "scheme": self.scheme,
            "num_points": self.num_points,
            "normalization": list(self.normalization) if self.normalization is not None else None,
            "normalization_mode": self.normalization_mode,
            "coordinates": COORDINATES_TEXT,
        }
        return hparams if self.channels == 3 else hparams | {"channels": self.channels}

    # -- an exported model's metadata --------------------------------------------------------------------
    def to_metadata(self) -> dict[str, Any]:
        """The ``pfld.*`` metadata: the required keys, the NME's normalisation, one line of text each on
        the input, the crop and every output, and ``pfld.channels`` for a grey model."""
        metadata = {
            PREFIX + "input_size": self.input_size,
            PREFIX + "mean": list(self.mean),
            PREFIX + "std": list(self.std),
            PREFIX + "crop_scale": self.crop_scale,
            PREFIX + "num_landmarks": self.num_points,
            PREFIX + "scheme": self.scheme,
            PREFIX + "normalization": list(self.normalization or []),
            PREFIX + "normalization_mode": self.normalization_mode,
            PREFIX + "input": INPUT_TEXT if self.channels == 3 else GREY_INPUT_TEXT,
            PREFIX + "crop": CROP_TEXT,
            PREFIX + "landmarks": LANDMARKS_TEXT,
            PREFIX + "outputs": ["landmarks", "pose"] if self.with_pose else ["landmarks"],
        }
        if self.with_pose:
            metadata[PREFIX + "pose"] = POSE_TEXT
        if self.channels != 3:
            metadata[PREFIX + "channels"] = self.channels
        return metadata

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], where: str = "model") -> ModelSpec:
        """From decoded ``pfld.*`` metadata (`decode_metadata` of an ONNX file's ``metadata_props``, or
        a sidecar JSON's ``metadata``); ``where`` names the file in errors."""
        missing = [key for key in REQUIRED_KEYS if key not in metadata]
        if missing:
            raise ValueError(
                f"{where}: not a pfld model (metadata lacks {missing}); export with python -m export"
            )
        channels = metadata.get(PREFIX + "channels", 3)
        if isinstance(channels, bool) or channels not in CHANNELS:
            raise ValueError(f"{where}: metadata {PREFIX}channels must be 3 or 1, got {channels!r}")
        _check_mean_std(metadata, channels, f"{where}: ")
        pair = metadata.get(PREFIX + "normalization") or None
        return cls(
            scheme=str(metadata[PREFIX + "scheme"]),
            num_points=int(metadata[PREFIX + "num_landmarks"]),
            input_size=int(metadata[PREFIX + "input_size"]),
            crop_scale=float(metadata[PREFIX + "crop_scale"]),
            mean=tuple(metadata[PREFIX + "mean"]),
            std=tuple(metadata[PREFIX + "std"]),
            normalization=tuple(pair) if pair else None,
            normalization_mode=str(metadata.get(PREFIX + "normalization_mode", DEFAULT_NORMALIZATION)),
            with_pose="pose" in (metadata.get(PREFIX + "outputs") or []),
            channels=int(channels),
        )


def check_metadata(
    metadata: Mapping[str, Any], input_size: int, num_landmarks: int, channels: int = 3
) -> None:
    """Refuse metadata without `REQUIRED_KEYS` or whose size, point count or input channels (3 when
    ``pfld.channels`` is absent) differ from the model's."""
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"metadata lacks {missing}; an exported model must carry {list(REQUIRED_KEYS)}")
    described = {**metadata, PREFIX + "channels": metadata.get(PREFIX + "channels", 3)}
    for name, value in (("input_size", input_size), ("num_landmarks", num_landmarks), ("channels", channels)):
        if described[PREFIX + name] != value:
            raise ValueError(
                f"metadata {PREFIX + name}={described[PREFIX + name]!r} but the model has {value}"
            )
    _check_mean_std(metadata, channels)


def _check_mean_std(metadata: Mapping[str, Any], channels: int, where: str = "") -> None:
    """Refuse ``pfld.mean`` / ``pfld.std`` that are not one number per input channel."""
    for key in (PREFIX + "mean", PREFIX + "std"):
        value = metadata[key]
        if not (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == channels):
            raise ValueError(f"{where}metadata {key} must hold {_values(channels)}, got {value!r}")


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


def _values(channels: int) -> str:
    return "three floats (R, G, B)" if channels == 3 else "one float (grey)"


def _parses_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
