import shutil

import numpy as np
import pytest
import torch

from pfld.data.attributes import FACE_CLASSES, face_classes
from pfld.data.datamodule import LandmarkDataModule
from pfld.data.normalize import model_input
from pfld.data.readers import read_landmark_csv
from pfld.data.schemes import custom_scheme, ibug_68
from pfld.data.transforms import build_eval_transform
from tests.conftest import FIXTURES


def _module(embedded_dir, **kwargs) -> LandmarkDataModule:
    train = kwargs.pop("train", [lambda: read_landmark_csv(embedded_dir / "train.csv")[:96]])
    val = kwargs.pop("val", [lambda: read_landmark_csv(embedded_dir / "val.csv")[:32]])
    return LandmarkDataModule(train=train, val=val, scheme=ibug_68(), batch_size=16, num_workers=0, **kwargs)


def test_batches_have_the_documented_shapes(embedded_dir):
    datamodule = _module(embedded_dir)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (16, 112, 112, 3) and batch["image"].dtype == torch.uint8
    assert batch["landmarks"].shape == (16, 68, 2)
    assert batch["angles"].shape == (16, 3) and batch["angles"].abs().max() < np.pi
    assert batch["classes"].shape == (16, len(FACE_CLASSES))
    assert (batch["classes"].sum(dim=1) >= 1).all(), "every face must belong to a class"
    val = next(iter(datamodule.val_dataloader()))
    assert 0.0 < val["landmarks"].min() and val["landmarks"].max() < 1.0  # policy crop holds the face
    inputs = model_input(val["image"], datamodule.mean, datamodule.std)
    assert inputs.shape == (16, 3, 112, 112) and inputs.is_contiguous(memory_format=torch.channels_last)
    assert abs(float(inputs.mean())) < 1.0  # normalised
    expected = (val["image"][3, 50, 60].float() / 255 - torch.tensor(datamodule.mean)) / torch.tensor(
        datamodule.std
    )
    torch.testing.assert_close(inputs[3, :, 50, 60], expected)
    strided = val["image"].permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # NHWC view of NCHW memory
    again = model_input(strided, datamodule.mean, datamodule.std)
    assert again.is_contiguous(memory_format=torch.channels_last)  # whatever the crops' strides
    torch.testing.assert_close(again, inputs)


def test_validation_is_deterministic_and_training_is_not(embedded_dir):
    datamodule = _module(embedded_dir)
    datamodule.setup("fit")
    val = datamodule.val_dataloader().dataset
    torch.testing.assert_close(val[0]["image"], val[0]["image"])
    train = datamodule.train_dataloader().dataset
    assert not torch.equal(train[0]["landmarks"], train[0]["landmarks"])


def test_mean_shape_and_class_fractions(embedded_dir):
    datamodule = _module(embedded_dir)
    datamodule.setup("fit")
    mean = datamodule.mean_shape()
    assert mean.shape == (68, 2) and 0.05 < mean.min() and mean.max() < 0.95
    assert mean[36, 0] < mean[45, 0]  # subject's right eye on the image's left
    fractions = datamodule.class_fractions()
    faces = len(datamodule.train_faces)
    assert fractions[1] == pytest.approx(95 / faces)  # all frontal but one
    assert fractions[0] + fractions[1] == pytest.approx(1.0, abs=1.0 / faces)  # profile, frontal: every face
    # no expression/occlusion flags in 300W-style data: floored at one face, never zero
    assert fractions[4] == fractions[5] == pytest.approx(1.0 / faces)


def test_face_classes():
    np.testing.assert_array_equal(face_classes(np.array([45.0, 0, 0])), [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(face_classes(np.array([5.0, 25, 0])), [0, 1, 1, 0, 0, 0])
    flagged = face_classes(np.array([5.0, -25, 0]), {"pose": True, "expression": True, "occlusion": True})
    np.testing.assert_array_equal(flagged, [1, 0, 0, 1, 1, 1])


def test_identity_split_when_no_validation_source(embedded_dir):
    datamodule = _module(embedded_dir, val=[], val_fraction=0.25)
    datamodule.setup("fit")
    train_ids = set(datamodule.train_faces.identities.tolist())
    val_ids = set(datamodule.val_faces.identities.tolist())
    assert val_ids and not train_ids & val_ids


def test_config_that_does_not_fit_the_data(embedded_dir):
    with pytest.raises(ValueError, match="data.num_points is 98"):
        _module(embedded_dir, num_points=98)
    five = custom_scheme("five", 5, flip_pairs=[[0, 1]], normalization=[0, 1])
    datamodule = LandmarkDataModule(
        train=[lambda: read_landmark_csv(embedded_dir / "train.csv")[:4]], scheme=five, num_workers=0
    )
    with pytest.raises(ValueError, match=r"train\.csv:2: 68 points, but the scheme 'five' has 5"):
        datamodule.setup("fit")


def test_empty_split_fails(embedded_dir):
    with pytest.raises(ValueError, match="val split is empty"):
        _module(embedded_dir, val=[list]).setup("fit")


def test_missing_and_corrupt_images_are_named(tmp_path, embedded_dir):
    records = read_landmark_csv(embedded_dir / "train.csv")[:3]
    (tmp_path / "images").mkdir()
    for record in records:
        shutil.copy(record.image_path, tmp_path / "images" / record.image_path.name)
    shutil.copy(embedded_dir / "train.csv", tmp_path / "train.csv")
    broken = tmp_path / "images" / records[1].image_path.name
    broken.write_bytes(b"not a jpeg")
    datamodule = _module(embedded_dir, train=[lambda: read_landmark_csv(tmp_path / "train.csv")[:3]])
    with pytest.raises(ValueError, match=f"{broken.name}: cannot decode"):
        datamodule.setup("fit")
    broken.unlink()
    datamodule = _module(embedded_dir, train=[lambda: read_landmark_csv(tmp_path / "train.csv")[:3]])
    with pytest.raises(
        FileNotFoundError, match=rf"{broken.name}: image not found \(annotated in .*train\.csv:3\)"
    ):
        datamodule.setup("fit")


def _same_face_dataset(embedded_dir, copies: int = 4):
    from pfld.data.cache import build_face_cache
    from pfld.data.dataset import LandmarkDataset
    from pfld.data.transforms import build_train_transform

    faces = build_face_cache(read_landmark_csv(embedded_dir / "train.csv")[:1] * copies, 112)
    transform = build_train_transform(112, ibug_68().flip_permutation)
    return LandmarkDataset(faces, transform, ibug_68())


def test_augmentation_follows_the_run_seed(embedded_dir):
    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        dataset = _same_face_dataset(embedded_dir)
        draws.append(torch.stack([dataset[i]["landmarks"] for i in range(4)]))
    torch.testing.assert_close(draws[0], draws[1])


def test_workers_draw_different_augmentations(embedded_dir):
    from torch.utils.data import DataLoader

    torch.manual_seed(7)
    loader = DataLoader(_same_face_dataset(embedded_dir), batch_size=1, num_workers=2)
    first, second = (batch["landmarks"] for batch, _ in zip(loader, range(2), strict=False))
    assert not torch.allclose(first, second), "two workers replayed the same augmentation"


def test_holes_travel_with_their_points_through_the_flip():
    """An unlabelled point stays unlabelled after augmentation; a flip moves the hole to its partner."""
    from dataclasses import replace

    from pfld.data.cache import build_face_cache
    from pfld.data.dataset import LandmarkDataset
    from pfld.data.schemes import load_scheme
    from pfld.data.transforms import build_train_transform

    scheme = load_scheme("kaggle15")
    csv = FIXTURES / "csv" / "kaggle15_holes.csv"
    record = read_landmark_csv(csv, num_points=15)[0]
    landmarks = record.landmarks.copy()
    landmarks[2] = np.nan  # left_eye_inner_corner, flip partner of 4 (right_eye_inner_corner)
    faces = build_face_cache([replace(record, landmarks=landmarks)], 112, scheme)
    still = {"rotate_deg": 0.0, "scale": (1.0, 1.0), "shift": 0.0, "color": 0, "blur": 0, "occlusion": 0}
    for flip, hole in ((0.0, 2), (1.0, 4)):
        transform = build_train_transform(112, scheme.flip_permutation, flip=flip, **still)
        sample = LandmarkDataset(faces, transform, scheme)[0]
        assert sample["visible"].tolist() == [i != hole for i in range(15)]
        assert torch.isfinite(sample["landmarks"]).all()
        assert bool(sample["pose_valid"]), "14 labelled points still fit a pose"
    unflipped = LandmarkDataset(faces, build_eval_transform(112), scheme)[0]
    flipped = sample
    # the subject's right eye centre (1) after the flip sits where the left one (0) was, mirrored
    assert abs(float(flipped["landmarks"][1, 0]) - (1 - float(unflipped["landmarks"][0, 0]))) < 1e-4


def test_a_face_without_enough_pose_points_has_no_pose_target():

    from pfld.data.cache import build_face_cache
    from pfld.data.dataset import LandmarkDataset
    from pfld.data.schemes import load_scheme

    scheme = load_scheme("kaggle15")
    csv = FIXTURES / "csv" / "kaggle15_holes.csv"
    faces = build_face_cache(read_landmark_csv(csv, num_points=15), 112, scheme)
    sample = LandmarkDataset(faces, build_eval_transform(112), scheme)[2]  # 4 labelled points
    assert int(sample["visible"].sum()) == 4 and not bool(sample["pose_valid"])
    assert torch.equal(sample["angles"], torch.zeros(3))
    assert sample["classes"][1] == 1, "a face of unknown pose counts as frontal, never weight zero"


def test_oversampling_draws_a_class_factor_times_as_often(embedded_dir, capsys):
    plain = _module(embedded_dir)
    plain.setup("fit")
    profile = np.flatnonzero(_classes(plain)[:, FACE_CLASSES.index("profile")])
    assert len(profile) == 1, "the first 96 sample faces hold one profile"
    assert plain.sample_weights is None  # each face once an epoch

    favoured = _module(embedded_dir, oversample={"profile": 20})
    favoured.setup("fit")
    assert "profile 1.0% of the faces -> 17.4% of the draws" in capsys.readouterr().out  # 20 / (95 + 20)
    sampler = favoured.train_dataloader().sampler
    drawn = np.concatenate([sampler.order(epoch).numpy() for epoch in range(50)])
    assert len(drawn) == 50 * 96 and 0.14 < np.mean(drawn == profile[0]) < 0.21
    rarer = _module(embedded_dir, oversample={"profile": 0.5, "head_down": 1})  # a factor below 1 too
    rarer.setup("fit")
    assert rarer.sample_weights[profile[0]] == 0.5 and np.sum(rarer.sample_weights == 1) == 95
    with pytest.raises(ValueError, match="oversample: profil=2.*give a face class"):
        _module(embedded_dir, oversample={"profil": 2})
    with pytest.raises(ValueError, match="oversample: profile=0.*a factor > 0"):
        _module(embedded_dir, oversample={"profile": 0})


def _classes(datamodule: LandmarkDataModule) -> np.ndarray:
    from pfld.data.attributes import class_memberships

    return class_memberships(datamodule.train_faces, datamodule.pose_thresholds)
