"""Data preparation (`python -m data ...`) on the WFLW-, 300W- and CSV-format fixtures in tests/data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pfld.cli.data import main as prepare_main
from pfld.data import cache as cache_module
from pfld.data.prepare import MANIFEST_FILE
from pfld.data.store import load_faces
from tests.conftest import FIXTURES


def test_wflw_preparation_keeps_points_box_flags_and_angles(tmp_path):
    manifest = prepare_main(["wflw", "--root", str(FIXTURES / "wflw"), "--out", str(tmp_path)])
    assert manifest["complete"] and manifest["settings"]["scheme"] == "wflw98"
    assert manifest["splits"]["train"]["faces"] == 1 and manifest["splits"]["test"]["faces"] == 3
    assert json.loads((tmp_path / MANIFEST_FILE).read_text()) == manifest
    faces = load_faces(tmp_path / "test")
    assert faces.images.shape == (3, 168, 168, 3) and faces.landmarks.shape == (3, 98, 2)
    assert faces.flag_names == ("pose", "expression", "illumination", "make_up", "occlusion", "blur")
    assert np.isfinite(faces.angles).all(), "98-point faces get Euler angles"
    unit = faces.unit_landmarks()
    assert unit.min() > 0.0 and unit.max() < 1.0, "the policy crop holds every point"
    assert isinstance(faces.images, np.memmap), "images are memory-mapped, not read into memory"
    classes = manifest["splits"]["test"]["classes"]
    assert classes["profile"] + classes["frontal"] == 3


def test_300w_preparation_gives_the_standard_splits(tmp_path):
    manifest = prepare_main(["300w", "--root", str(FIXTURES / "300w"), "--out", str(tmp_path)])
    counts = {split: info["faces"] for split, info in manifest["splits"].items()}
    assert counts == {"train": 6, "common": 2, "challenging": 2}
    train = load_faces(tmp_path / "train")
    assert len(set(train.identities.tolist())) == 5  # afw's two faces share a photo


def test_rerun_is_a_no_op_and_other_settings_are_refused(tmp_path, capsys):
    args = ["300w", "--root", str(FIXTURES / "300w"), "--out", str(tmp_path)]
    prepare_main(args)
    stamp = (tmp_path / "train" / "annotations.npz").stat().st_mtime_ns
    prepare_main(args)
    assert "nothing to do" in capsys.readouterr().out
    assert (tmp_path / "train" / "annotations.npz").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"other settings .*crop_scale.*--force"):
        prepare_main([*args, "--crop-scale", "1.4"])
    manifest = prepare_main([*args, "--crop-scale", "1.4", "--force"])
    assert manifest["settings"]["crop_policy"]["crop_scale"] == 1.4


class Killed(RuntimeError):
    """Stands for the process being killed mid-run."""


def test_interrupted_run_resumes_from_finished_shards(tmp_path, monkeypatch):
    args = ["300w", "--root", str(FIXTURES / "300w"), "--out", str(tmp_path), "--shard-size", "2"]
    real_crop, calls, die = cache_module.crop_record, [], [True]

    def crop_then_die(*a, **k):
        calls.append(1)
        if len(calls) == 5 and die[0]:
            raise Killed  # the run dies in the third shard of the train split
        return real_crop(*a, **k)

    monkeypatch.setattr("pfld.data.prepare.crop_record", crop_then_die)
    with pytest.raises(Killed):
        prepare_main(args)
    assert len(list((tmp_path / "train" / ".parts").glob("part-*.npz"))) == 2
    calls.clear()
    die[0] = False
    manifest = prepare_main(args)
    assert len(calls) == 10 - 4, "the two finished shards (4 faces) were not cropped again"
    assert manifest["complete"] and manifest["splits"]["train"]["faces"] == 6
    assert not (tmp_path / "train" / ".parts").exists()


def test_bad_files_are_reported_skipped_and_counted(tmp_path, capsys):
    root = tmp_path / "300w"
    shutil.copytree(FIXTURES / "300w", root)
    (root / "afw" / "111076519_1.jpg").write_bytes(b"not a jpeg")  # corrupt photo
    (root / "helen" / "trainset" / "100032540_1.jpg").unlink()  # annotation without its photo
    pts = root / "lfpw" / "trainset" / "image_0002.pts"
    pts.write_text("\n".join(pts.read_text().splitlines()[:-3]) + "\n}\n")  # 67 points
    manifest = prepare_main(["300w", "--root", str(root), "--out", str(tmp_path / "out")])
    assert manifest["splits"]["train"] == manifest["splits"]["train"] | {"faces": 3, "skipped": 3}
    problems = " ".join(entry["problem"] for entry in manifest["skipped"])
    assert "111076519_1.jpg: cannot decode" in problems
    assert "100032540_1" in problems and "image_0002.pts" in problems
    assert "skipped 3 faces" in capsys.readouterr().out


def test_partially_labelled_csv_keeps_its_holes(tmp_path):
    manifest = prepare_main(
        ["csv", "--split", f"train={FIXTURES / 'csv' / 'kaggle15_holes.csv'}", "--scheme", "kaggle15",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert manifest["splits"]["train"]["faces"] == 3
    faces = load_faces(tmp_path / "train")
    labelled = faces.visible.sum(axis=1)
    assert labelled[0] == 15 and labelled[1] == 12 and labelled[2] == 4
    assert np.isnan(faces.angles[2]).all(), "four points cannot fit a pose"
    assert np.isfinite(faces.angles[0]).all()
    assert manifest["splits"]["train"]["pose_unknown"] >= 1


def test_dataset_box_source_centres_on_the_given_box(tmp_path):
    from pfld.data.readers import read_wflw_split

    prepare_main(["wflw", "--root", str(FIXTURES / "wflw"), "--out", str(tmp_path), "--box", "dataset"])
    faces = load_faces(tmp_path / "train")
    assert faces.box_source == "dataset"
    record = read_wflw_split(FIXTURES / "wflw", "train")[0]
    # photo pixels -> unit crop coordinates is x -> zoom * x + offset per axis: recover it from the points
    unit = faces.unit_landmarks()[0]
    for axis in (0, 1):
        zoom, offset = np.polyfit(record.landmarks[:, axis], unit[:, axis], 1)
        centre = (record.box[axis] + record.box[axis + 2]) / 2
        assert zoom * centre + offset == pytest.approx(0.5, abs=1e-3), "the crop is centred on the box"
        longer_side = float(max(record.box[2] - record.box[0], record.box[3] - record.box[1]))
        assert zoom * 1.2 * longer_side == pytest.approx(1.0, abs=1e-3), "its side is 1.2 x the box"


def test_crop_resizing_keeps_points_on_the_same_pixels(tmp_path):
    prepare_main(["wflw", "--root", str(FIXTURES / "wflw"), "--out", str(tmp_path)])
    faces = load_faces(tmp_path / "test")
    bigger = faces.resized(224)
    assert bigger.images.shape[1:] == (336, 336, 3) and bigger.crop_size == 224
    np.testing.assert_allclose(bigger.unit_landmarks(), faces.unit_landmarks(), atol=1e-5)


def _prepared_split(folder: Path) -> str:
    return f"[{{_target_:pfld.data.store.load_faces,_partial_:true,folder:'{folder}'}}]"


@pytest.mark.slow
def test_training_runs_on_prepared_wflw_by_choosing_data_wflw(tmp_path):
    from pfld.training.loop import train
    from tests.conftest import compose_train

    prepare_main(["wflw", "--root", str(FIXTURES / "wflw"), "--out", str(tmp_path / "data" / "wflw")])
    overrides = ["data=wflw", "debug=fast", f"paths.data_dir={tmp_path / 'data'}", "data.batch_size=2"]
    metrics = train(compose_train(overrides, tmp_path / "run"))
    # One step from the mean shape of the one training face, scored on 2 of the 3 test faces (measured:
    # 1.34 times the mean shape's NME on the 3; not started at the mean shape: 5.3 times).
    assert metrics["val/nme"] == pytest.approx(metrics["val/nme_mean_shape"], rel=0.6)


@pytest.mark.slow
def test_training_on_partially_labelled_faces_without_pose(tmp_path, capsys):
    """kaggle15 with holes; the five-point scheme has no pose points, so the pose branch goes off."""
    from pfld.training.loop import train
    from tests.conftest import compose_train

    prepare_main(
        ["csv", "--split", f"train={FIXTURES / 'csv' / 'kaggle15_holes.csv'}", "--scheme", "kaggle15",
         "--out", str(tmp_path / "kaggle")]
    )  # fmt: skip
    split = _prepared_split(tmp_path / "kaggle" / "train")
    data = [
        "data.scheme.name_or_path=kaggle15",
        "data.num_points=15",
        f"data.train={split}",
        f"data.val={split}",
    ]
    metrics = train(compose_train(["debug=fast", *data, "validate_best=true"], tmp_path / "run"))
    assert metrics["val/nme"] == pytest.approx(metrics["val/nme_mean_shape"], rel=0.3), (
        "faces with holes are scored on their labelled points"
    )

    five = tmp_path / "five.yaml"
    five.write_text("name: five\nnum_points: 15\neye_corners: [1, 0]\nflip_pairs: [[1, 0], [5, 3]]\n")
    cfg = compose_train(["debug=fast", *data, f"data.scheme.name_or_path={five}"], tmp_path / "five")
    train(cfg)
    assert "declares no pose reference points: the pose branch is switched off" in capsys.readouterr().out
    assert cfg.model.auxiliary is False and cfg.loss.pose_weight == 0.0
    with pytest.raises(ValueError, match="no pose reference points.*loss=l1"):
        train(compose_train(["debug=fast", "loss=pfld", *data, f"data.scheme.name_or_path={five}"], tmp_path))
    family = ["loss=pose_balance", "loss.pose_factor=truth", "loss.balance=effective"]
    cfg = compose_train(
        ["debug=fast", *family, *data, f"data.scheme.name_or_path={five}"], tmp_path / "family"
    )
    metrics = train(cfg)  # the pose factor has no angles to read: switched off, said so, a finite loss
    assert "loss.pose_factor=truth is set to none" in capsys.readouterr().out
    assert cfg.loss.pose_factor == "none" and cfg.loss.pose_weight == 0.0
    assert metrics["val/nme"] == pytest.approx(metrics["val/nme_mean_shape"], rel=0.3)


def test_python_m_data_runs_from_the_repository_root(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    command = [sys.executable, "-m", "data", "300w", "--root", str(FIXTURES / "300w"), "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "prepared" in result.stdout
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["complete"] and manifest["settings"]["scheme"] == "ibug68"
    assert {split: info["faces"] for split, info in manifest["splits"].items()} == {
        "train": 6,
        "common": 2,
        "challenging": 2,
    }


def test_a_split_is_cut_in_two_without_an_identity_on_both_sides(tmp_path):
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "scripts"))
    from split_by_identity import split_folder

    prepare_main(["300w", "--root", str(FIXTURES / "300w"), "--out", str(tmp_path)])
    whole = load_faces(tmp_path / "train")
    rest, held = tmp_path / "rest", tmp_path / "held"
    counts = split_folder(tmp_path / "train", (rest, held), 0.5, seed=0)
    rest_faces, held_faces = load_faces(rest), load_faces(held)
    assert counts[str(rest)] + counts[str(held)] == len(whole) == len(rest_faces) + len(held_faces)
    assert not set(rest_faces.identities.tolist()) & set(held_faces.identities.tolist())
    # every face is kept whole: its image and points are those of the same face in the split
    for part in (rest_faces, held_faces):
        for i, source in enumerate(part.sources):
            j = whole.sources.tolist().index(source)
            assert np.array_equal(part.images[i], whole.images[j])
            assert np.allclose(part.landmarks[i], whole.landmarks[j], equal_nan=True)
    with pytest.raises(ValueError, match="would overwrite"):
        split_folder(tmp_path / "train", (tmp_path / "train", held), 0.5, seed=0)
