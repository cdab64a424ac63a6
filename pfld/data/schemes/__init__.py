"""Landmark schemes as data: one YAML file per scheme, loaded into a frozen `LandmarkScheme`.

Shipped: ``ibug68`` (300W), ``wflw98``, ``cofw29``, ``five_point``, ``kaggle15`` (a commented example
for writing your own). "Left" and "right" are the subject's: the subject's right eye is on the image's left.
"""

from pfld.data.schemes.loader import available_schemes, ibug_68, load_scheme
from pfld.data.schemes.scheme import (
    MIN_POSE_REFERENCE_POINTS,
    POSE_REFERENCE_NAMES,
    LandmarkScheme,
    custom_scheme,
)

__all__ = [
    "MIN_POSE_REFERENCE_POINTS",
    "POSE_REFERENCE_NAMES",
    "LandmarkScheme",
    "available_schemes",
    "custom_scheme",
    "ibug_68",
    "load_scheme",
]
