"""`python -m data <format> ...`: prepare a data set a user brought, once, for any number of runs.

    python -m data wflw --root ~/datasets/WFLW                  -> data/wflw/{train,test}
    python -m data 300w --root ~/datasets/300W                  -> data/300w/{train,common,challenging}
    python -m data coco --split train=a.json --split test=b.json --scheme cofw29 --out data/cofw
    python -m data csv  --split train=faces.csv --scheme kaggle15 --out data/kaggle
    python -m data pts  --split train=folder_a --split val=folder_b --scheme ibug68 --out data/mine
    python -m data mtfl --root ../shared/data/mtfl5                -> data/mtfl5/train (five points,
                                                                      cropped like 68-point faces)
    python -m data kaggle --train training.csv [--test test.csv]  -> data/kaggle/train (15 points; the
    python -m data kaggle --train face_images.npz                     whole 96 px image is the crop)
    python -m data pseudo-label --model best.ckpt --split data/mtfl5/train --out data/mtfl5_68/train
                                          (a model fills in the points the faces lack; see pseudo_label.py)

Train on the result with ``python train.py data=wflw`` (or a data config listing the split folders).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from pfld.data.attributes import PoseThresholds
from pfld.data.mixed import with_estimated_boxes
from pfld.data.prepare import CropPolicy, SplitReader, prepare_dataset
from pfld.data.readers import (
    read_300w,
    read_coco_keypoints,
    read_landmark_csv,
    read_mtfl,
    read_pts_folder,
    read_wflw_split,
)
from pfld.data.readers.kaggle import (
    KaggleFaces,
    kaggle_records,
    read_kaggle_csv,
    read_kaggle_npz,
    read_kaggle_test,
)
from pfld.data.schemes import available_schemes, load_scheme
from pfld.data.schemes.mapping import load_mapping
from pfld.data.store import load_faces
from pfld.teacher import DROP_THRESHOLD

REPO_DATA = Path(__file__).resolve().parents[2] / "data"
KAGGLE_IMAGES = ".kaggle_images"  # Kaggle's images as files while they are prepared, under --out


def _common_options(parser: argparse.ArgumentParser, default_out: str | None) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=None if default_out is None else REPO_DATA / default_out,
        required=default_out is None,
        help="output folder (default: data/<format>)",
    )
    parser.add_argument("--crop-size", type=int, default=112, help="policy crop side in stored pixels")
    parser.add_argument(
        "--crop-scale",
        type=float,
        default=1.2,
        help="square side over the longer side of the face box (training must use the same)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=1.5,
        help="stored crop over policy crop: room for rotation and shift augmentation",
    )
    parser.add_argument(
        "--box",
        choices=("landmarks", "dataset"),
        default="landmarks",
        help="face box the crop is centred on: the landmarks' box or the data set's own box",
    )
    parser.add_argument("--profile-yaw", type=float, default=30.0, help="|yaw| (degrees) of a profile face")
    parser.add_argument("--head-pitch", type=float, default=20.0, help="|pitch| (degrees) of head up/down")
    parser.add_argument("--workers", type=int, default=2, help="threads reading and cropping photos")
    parser.add_argument("--shard-size", type=int, default=512, help="faces per resumable shard")
    parser.add_argument(
        "--force", action="store_true", help="prepare again even if prepared with other settings"
    )


def _split_options(parser: argparse.ArgumentParser, what: str, default_scheme: str) -> None:
    parser.add_argument(
        "--split",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help=f"a split and its {what}; repeat for more splits, or for several files in one split",
    )
    parser.add_argument(
        "--images",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="folder the image names are relative to, for all splits or for split NAME "
        "(default: beside each annotation file)",
    )
    parser.add_argument(
        "--scheme",
        default=default_scheme,
        help=f"shipped scheme ({', '.join(available_schemes())}) or a scheme YAML file",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="format", required=True)
    wflw = commands.add_parser("wflw", help="WFLW (98 points, six attribute flags): train and test")
    wflw.add_argument(
        "--root", type=Path, required=True, help="WFLW folder with WFLW_annotations/ and WFLW_images/"
    )
    _common_options(wflw, "wflw")
    w300 = commands.add_parser("300w", help="300W (68 points): train, common and challenging")
    w300.add_argument(
        "--root",
        type=Path,
        required=True,
        help="300W folder with afw/, helen/{trainset,testset}/, lfpw/{trainset,testset}/, ibug/",
    )
    _common_options(w300, "300w")
    mtfl = commands.add_parser("mtfl", help="MTFL (five points, head pose, smiling, glasses): train")
    mtfl.add_argument(
        "--root", type=Path, required=True, help="folder with train.csv, attributes.csv, images/"
    )
    mtfl.add_argument(
        "--crop-for",
        default="ibug68",
        help="cut each face as a face of this scheme would be cut (its landmark box estimated from the "
        "five points through the shipped mapping), so it can train that scheme's model beside fully "
        "annotated faces; 'none' crops on the five points' own box",
    )
    _common_options(mtfl, "mtfl5")
    kaggle = commands.add_parser("kaggle", help="Kaggle facial keypoints (15 points, 96 px grey): train")
    kaggle.add_argument(
        "--train", type=Path, required=True, help="training.csv, or face_images.npz (+ facial_keypoints.csv)"
    )
    kaggle.add_argument(
        "--keypoints", type=Path, help="the npz's points CSV (default: facial_keypoints.csv beside it)"
    )
    kaggle.add_argument(
        "--test", type=Path, help="test.csv: read and counted, not prepared (it has no points)"
    )
    _common_options(kaggle, "kaggle")
    # The faces are cut already: the policy crop is the whole image at its own 96 px (the data set's box
    # is the image), so a face with only four points is cut like a complete one; no border to store, as
    # nothing lies outside the image (augmentation fills black there either way).
    kaggle.set_defaults(crop_size=96, crop_scale=1.0, margin=1.0, box="dataset")
    pseudo = commands.add_parser(
        "pseudo-label", help="fill in the missing points of a prepared split with a trained model"
    )
    pseudo.add_argument(
        "--model",
        type=Path,
        action="append",
        required=True,
        help="a training checkpoint or an exported .onnx model; repeat for an ensemble",
    )
    pseudo.add_argument("--split", type=Path, required=True, help="a prepared split folder")
    pseudo.add_argument("--out", type=Path, required=True, help="folder of the pseudo-labelled split")
    pseudo.add_argument(
        "--threshold",
        type=float,
        default=DROP_THRESHOLD,
        help="drop faces whose annotated points the model misses by more than this (mean distance over "
        "the predicted inter-ocular distance)",
    )
    pseudo.add_argument("--mapping", type=Path, default=None, help="a scheme mapping file (default: shipped)")
    pseudo.add_argument(
        "--refine",
        type=int,
        default=None,
        help="passes cropping around the previous pass's points with the model's crop rule (default: 0 "
        "for faces cut with the model's crop scale, else 2)",
    )
    pseudo.add_argument(
        "--keep-scheme",
        action="store_true",
        help="write the faces in their own scheme, the missing points filled from the model's through the "
        "mapping (default: in the model's scheme)",
    )
    for name, what, scheme in (
        ("coco", "COCO-style keypoint json", "ibug68"),
        ("csv", "CSV of file,x0,y0,... (empty or NaN = unlabelled)", "ibug68"),
        ("pts", "folder of .pts files beside their images", "ibug68"),
    ):
        command = commands.add_parser(name, help=f"any scheme from a {what}")
        _split_options(command, what, scheme)
        _common_options(command, None)
    return parser


def _parse_splits(values: Sequence[str]) -> dict[str, list[Path]]:
    splits: dict[str, list[Path]] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--split expects NAME=PATH, got {value!r}")
        splits.setdefault(name, []).append(Path(path))
    return splits


def _image_dirs(values: Sequence[str], splits: Sequence[str]) -> dict[str, Path | None]:
    """``--images DIR`` (every split) and ``--images NAME=DIR`` (one split) -> split -> folder."""
    folders: dict[str, Path | None] = dict.fromkeys(splits)
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            folders = {s: Path(value) if folders[s] is None else folders[s] for s in folders}
        elif name not in folders:
            raise SystemExit(f"--images {value}: no split named {name!r} (splits: {', '.join(splits)})")
        else:
            folders[name] = Path(path)
    return folders


def _reader(read: Callable[..., list], paths: Sequence[Path], **kwargs: Any) -> SplitReader:
    """Read several annotation files of one split into one list, reporting bad entries."""
    return lambda on_error: [r for path in paths for r in read(path, on_error=on_error, **kwargs)]


def plan(args: argparse.Namespace) -> tuple[dict[str, SplitReader], str, dict[str, Any]]:
    """(split readers, scheme name or path, source description) for the parsed command line."""
    if args.format == "wflw":
        splits = {s: partial(_bound_split, read_wflw_split, args.root, s) for s in ("train", "test")}
        return splits, "wflw98", {"format": "wflw", "root": str(args.root.resolve())}
    if args.format == "300w":
        splits = {
            s: partial(_bound_split, read_300w, args.root, s) for s in ("train", "common", "challenging")
        }
        return splits, "ibug68", {"format": "300w", "root": str(args.root.resolve())}
    if args.format == "mtfl":
        return (
            {"train": partial(_mtfl_split, args.root, args.crop_for)},
            "five_point",
            {
                "format": "mtfl",
                "root": str(args.root.resolve()),
                "crop_for": args.crop_for,
            },
        )
    if args.format == "kaggle":
        files = {k: getattr(args, k) for k in ("train", "keypoints", "test")}
        source = {"format": "kaggle", **{k: v and str(v.resolve()) for k, v in files.items()}}
        return {"train": partial(_kaggle_split, args.train, args.keypoints, args.out)}, "kaggle15", source
    scheme = load_scheme(args.scheme)
    paths = _parse_splits(args.split)
    images = _image_dirs(args.images, list(paths))
    if args.format in ("coco", "csv"):
        read = read_coco_keypoints if args.format == "coco" else read_landmark_csv
        splits = {
            s: _reader(read, p, image_dir=images[s], num_points=scheme.num_points) for s, p in paths.items()
        }
    else:
        splits = {s: _reader(read_pts_folder, p, num_points=scheme.num_points) for s, p in paths.items()}
    source = {"format": args.format, "splits": {s: [str(p.resolve()) for p in ps] for s, ps in paths.items()}}
    return splits, args.scheme, source


def _mtfl_split(root: Path, crop_for: str, on_error: Callable[[str], None]) -> list:
    records = read_mtfl(root, on_error=on_error)
    if crop_for == "none":
        return records
    return with_estimated_boxes(records, load_mapping("five_point", crop_for), on_error)


def _kaggle_split(train: Path, keypoints: Path | None, out: Path, on_error: Callable[[str], None]) -> list:
    """The faces of training.csv or the npz variant, their images written for the pipeline to read."""
    if train.suffix.lower() == ".npz":
        faces = read_kaggle_npz(train, keypoints, on_error=on_error)
    else:
        faces = read_kaggle_csv(train, on_error=on_error)
    return kaggle_records(faces, out / KAGGLE_IMAGES / "train", on_error=on_error)


def _kaggle_summary(out: Path, manifest: dict[str, Any], test: KaggleFaces | None) -> None:
    """Print how many faces were kept and how many of their points are missing."""
    visible = load_faces(out / "train").visible
    missing = int((~visible).sum())
    print(
        f"kaggle: {len(visible)} training faces ({manifest['splits']['train']['skipped']} skipped), "
        f"{int((~visible).any(axis=1).sum())} of them with missing points; {missing} of {visible.size} "
        f"points missing ({missing / visible.size:.1%}), unlabelled for the loss"
    )
    if test is not None:
        print(
            f"test: {len(test)} faces, not prepared (a prepared face needs two labelled points); predict "
            "them from read_kaggle_test and answer IdLookupTable.csv with pfld.evaluation.kaggle.write_submission"
        )


def _bound_split(read: Callable[..., list], root: Path, split: str, on_error: Callable[[str], None]) -> list:
    return read(root, split, on_error=on_error)


def _box_source(args: argparse.Namespace) -> str:
    """MTFL faces cut for another scheme use their estimated boxes (`pfld.data.mixed.estimate_box`)."""
    if args.format == "mtfl" and args.crop_for != "none":
        if args.box != "landmarks":
            raise SystemExit("--box dataset: MTFL has no face boxes; use --crop-for none or a scheme")
        return "estimated"
    return args.box


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.format == "pseudo-label":
        from pfld.teacher.pseudo_label import pseudo_label_split

        return pseudo_label_split(
            args.split,
            args.model,
            args.out,
            args.threshold,
            args.mapping,
            refine=args.refine,
            keep_scheme=args.keep_scheme,
        )
    splits, scheme_name, source = plan(args)
    kaggle = args.format == "kaggle"
    test = read_kaggle_test(args.test) if kaggle and args.test is not None else None  # fail early
    try:
        manifest = prepare_dataset(
            args.out,
            splits,
            load_scheme(scheme_name),
            CropPolicy(args.crop_size, args.crop_scale, args.margin, _box_source(args)),
            source=source,
            thresholds=PoseThresholds(args.profile_yaw, args.head_pitch),
            force=args.force,
            shard_size=args.shard_size,
            workers=args.workers,
        )
    finally:
        if kaggle:
            shutil.rmtree(args.out / KAGGLE_IMAGES, ignore_errors=True)
    if kaggle:
        _kaggle_summary(args.out, manifest, test)
    return manifest
