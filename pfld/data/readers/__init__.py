"""Readers that turn annotation files into `FaceRecord`s, one module per format.

Every reader returns 0-based pixel coordinates (each module states how its format's values map to
them), names the file and line at fault, and takes ``on_error`` to skip and report bad entries.
"""

from pfld.data.readers.coco import read_coco_keypoints
from pfld.data.readers.common import IMAGE_SUFFIXES, OnError, identity_from_stem
from pfld.data.readers.landmark_csv import read_landmark_csv
from pfld.data.readers.mtfl import read_mtfl
from pfld.data.readers.pts import read_pts, read_pts_folder
from pfld.data.readers.w300 import read_300w
from pfld.data.readers.wflw import read_wflw, read_wflw_split

__all__ = [
    "IMAGE_SUFFIXES",
    "OnError",
    "identity_from_stem",
    "read_300w",
    "read_coco_keypoints",
    "read_landmark_csv",
    "read_mtfl",
    "read_pts",
    "read_pts_folder",
    "read_wflw",
    "read_wflw_split",
]
