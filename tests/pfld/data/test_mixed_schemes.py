"""Training a 68-point model on five-point faces too: scheme mappings, derived points, estimated crops."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from pfld.data.cache import FaceCache, concat_faces
from pfld.data.crop import landmark_box
from pfld.data.mixed import (
    derived_points,
    estimate_box,
    extend_points,
    extend_sigma,
    extended_scheme,
    fit_box_model,
    map_faces,
    similarity_fit,
)
from pfld.data.readers import read_landmark_csv, read_mtfl
from pfld.data.schemes import load_scheme
from pfld.data.schemes.mapping import available_mappings, load_mapping, read_mapping
from pfld.data.store import save_faces
from pfld.data.transforms import build_train_transform
from tests.conftest import EMBEDDED, FIXTURES, ROOT

IBUG = load_scheme("ibug68")


@pytest.fixture(scope="module")
def five():
    return load_mapping("five_point", "ibug68")


@pytest.fixture(scope="module")
def embedded_shapes() -> np.ndarray:
    """(N, 68, 2) pixels of the embedded sample's complete faces."""
    records = read_landmark_csv(EMBEDDED / "train.csv") + read_landmark_csv(EMBEDDED / "val.csv")
    shapes = np.stack([r.landmarks for r in records])
    return shapes[~np.isnan(shapes).any(axis=(1, 2))]


def test_the_five_point_mapping_knows_which_points_are_direct_and_which_derived(five):
    assert five.direct.tolist() == [-1, -1, 30, 48, 54]
    assert five.derived.tolist() == [True, True, False, False, False]
    shape = np.arange(136, dtype=np.float64).reshape(68, 2)
    projected = five.project(shape)
    np.testing.assert_allclose(projected[0], shape[36:42].mean(axis=0))
    np.testing.assert_allclose(projected[1], shape[42:48].mean(axis=0))
    np.testing.assert_allclose(projected[2:], shape[[30, 48, 54]])
    shape[40] = np.nan  # one eye point missing: that eye centre is unknown, the rest is not
    projected = five.project(shape)
    assert np.isnan(projected[0]).all() and np.isfinite(projected[1:]).all()


@pytest.mark.parametrize("name", available_mappings())
def test_every_shipped_mapping_commutes_with_the_flip(name):
    """Mirroring a face then mapping it is mapping it then mirroring: source point s of a mirrored face is
    what the mirrored weights of its flip partner say."""
    mapping = load_mapping(*name.split("-"))
    source_perm, target_perm = mapping.source.flip_permutation, mapping.target.flip_permutation
    for s in np.flatnonzero(mapping.used):
        np.testing.assert_allclose(mapping.weights[source_perm[s]], mapping.weights[s][target_perm])


def test_the_wflw_mapping_takes_68_points_one_to_one_with_matching_eye_corners():
    mapping = load_mapping("wflw98", "ibug68")
    assert mapping.used.sum() == 68 and not mapping.derived.any()
    assert sorted(mapping.direct[mapping.used].tolist()) == list(range(68))
    assert mapping.direct[60] == 36 and mapping.direct[72] == 45  # the outer eye corners of both


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("source: five_point\ntarget: ibug68\n", "missing \\['points'\\]"),
        ("source: five_point\ntarget: ibug68\npoints: {nose_tip: 30}\nextra: 1\n", "unknown \\['extra'\\]"),
        ("source: five_point\ntarget: ibug68\npoints: {nose_tip: 68}\n", "outside 0..67"),
        ("source: five_point\ntarget: ibug68\npoints: {nose: 30}\n", "not a point of 'five_point'"),
        ("source: five_point\ntarget: ibug68\npoints: {nose_tip: {30: 0.5, 33: 0.4}}\n", "sum to 0.9"),
        ("source: five_point\ntarget: ibug68\npoints: {nose_tip: [30, 30]}\n", "repeated"),
        ("source: five_point\ntarget: ibug68\npoints: {2: 30, nose_tip: 33}\n", "given twice"),
        ("source: five_point\ntarget: ibug68\npoints: {nose_tip: 30}\nbox: {reference: [[0, 0]]}\n", "box"),
        ("source: five_point\ntarget: ibug68\npoints: [30]\n", "points must map"),
        ("source: nope\ntarget: ibug68\npoints: {0: 30}\n", "unknown landmark scheme 'nope'"),
        ("[unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_mapping_file_is_refused_naming_the_file_and_the_problem(tmp_path, body, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=problem) as error:
        read_mapping(path)
    assert str(path) in str(error.value)


def test_a_scheme_pair_without_a_mapping_is_refused_with_the_shipped_ones_listed():
    with pytest.raises(
        ValueError, match="no shipped mapping from scheme 'kaggle15' to 'ibug68'.*five_point-ibug68"
    ):
        load_mapping("kaggle15", "ibug68")


def test_derived_points_are_closed_under_the_flip_and_pair_up_in_the_extended_scheme(five):
    left_eye_only = replace(
        five,
        weights=five.weights * np.array([0, 1, 1, 1, 1])[:, None],
        box_reference=None,
        box_regression=None,
    )
    derived = derived_points([left_eye_only], IBUG)
    assert derived.count == 2, "the right eye centre is added as the left one's mirror"
    scheme = extended_scheme(IBUG, derived)
    assert scheme.num_points == 70 and scheme.flip_pairs[-1] == (68, 69)
    assert scheme.eye_corners == IBUG.eye_corners and extended_scheme(IBUG, derived_points([], IBUG)) is IBUG


def five_point_faces(shapes: np.ndarray, mapping) -> FaceCache:
    """Five-point faces projected from 68-point shapes, on blank 168 px crops (112 + border)."""
    n = len(shapes)
    points = mapping.project(shapes).astype(np.float32)
    return FaceCache(
        images=np.zeros((n, 168, 168, 3), np.uint8),
        landmarks=points,
        angles=np.full((n, 3), np.nan, np.float32),
        identities=np.array([f"p{i}" for i in range(n)]),
        sources=np.array([f"five.csv:{i}" for i in range(n)]),
        flags=np.zeros((n, 1), bool),
        flag_names=("pose",),
        crop_size=112,
        border=28,
        scheme="five_point",
    )


def test_mapped_faces_carry_direct_points_in_place_and_derived_ones_after_the_model_points(
    five, embedded_shapes
):
    derived = derived_points([five], IBUG)
    faces = map_faces(five_point_faces(embedded_shapes[:3], five), five, derived)
    assert faces.num_points == 70 and faces.scheme == "ibug68"
    labelled = np.flatnonzero(~np.isnan(faces.landmarks[0, :, 0]))
    assert labelled.tolist() == [30, 48, 54, 68, 69]
    np.testing.assert_allclose(faces.landmarks[:, 68], embedded_shapes[:3, 36:42].mean(axis=1), atol=1e-4)
    with pytest.raises(ValueError, match="5 points"):
        map_faces(replace(faces, landmarks=faces.landmarks[:, :6]), five, derived)


def test_derived_targets_follow_augmentation_and_flip_like_the_points_they_average(five, embedded_shapes):
    """The invariant that lets a five-point face supervise a 68-point model: augmenting a face's derived
    points gives the derived points of its augmented 68 points, flips included."""
    derived = derived_points([five], IBUG)
    scheme = extended_scheme(IBUG, derived)
    shapes = embedded_shapes[:6].astype(np.float32) * 0.5 + 20  # inside the 168 px loose crop
    full = np.concatenate([shapes, np.full((6, 2, 2), np.nan, np.float32)], axis=1)
    mapped = map_faces(five_point_faces(shapes, five), five, derived).landmarks
    image = np.zeros((168, 168, 3), np.uint8)
    for flip in (0.0, 1.0):
        for i in range(6):
            outputs = []
            for points in (full[i], mapped[i]):
                transform = build_train_transform(112, scheme.flip_permutation, flip=flip, occlusion=0.0)
                transform.set_random_seed(i)
                outputs.append(transform(image, points).points)
            expected = derived.weights @ outputs[0][:68].astype(np.float64)
            np.testing.assert_allclose(outputs[1][68:], expected, atol=1e-3)
            np.testing.assert_allclose(outputs[1][[30, 48, 54]], outputs[0][[30, 48, 54]], atol=1e-4)


def test_predictions_are_extended_by_the_same_weighted_means():
    weights = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    points = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    extended = extend_points(points, weights)
    assert extended.shape == (2, 5, 2)
    torch.testing.assert_close(extended[:, 3], (points[:, 0] + points[:, 1]) / 2)
    sigma = torch.ones(2, 3, 2)
    torch.testing.assert_close(extend_sigma(sigma, weights)[:, 3], torch.full((2, 2), 0.5**0.5))


def test_a_similarity_fit_recovers_scale_rotation_and_shift():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(5, 2))
    angle, scale = 0.3, 2.5
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = scale * points @ rotation.T + [3.0, -1.0]
    matrix = similarity_fit(points, moved)
    np.testing.assert_allclose(points @ matrix[:, :2].T + matrix[:, 2], moved, atol=1e-9)
    upright = similarity_fit(points, moved, rotation=False)
    assert upright[0, 1] == upright[1, 0] == 0.0


def test_the_shipped_box_model_places_the_crop_of_embedded_faces_from_their_five_points(
    five, embedded_shapes
):
    """The shipped model was fitted on shared 300W / ytf68 faces; the embedded sample's faces are other
    photos. The estimated crop's centre is within a few percent of its side of the true one."""
    centre, ratio = [], []
    for shape in embedded_shapes:
        true, guess = landmark_box(shape), estimate_box(five.project(shape), five)
        side = (true[2:] - true[:2]).max()
        centre.append(np.linalg.norm((guess[:2] + guess[2:] - true[:2] - true[2:]) / 2) / side)
        ratio.append((guess[2] - guess[0]) / side)
    assert np.median(centre) < 0.05 and 0.9 < np.median(ratio) < 1.1
    assert np.median(centre) < 0.6 * _similarity_only_centre_error(five, embedded_shapes)


def _similarity_only_centre_error(five, shapes: np.ndarray) -> float:
    """The same error when the crop is the mean five points' box model with no offsets (a similarity)."""
    plain = replace(five, box_regression=five.box_regression * np.r_[np.zeros(10), 1.0][:, None])
    errors = []
    for shape in shapes:
        true, guess = landmark_box(shape), estimate_box(five.project(shape), plain)
        errors.append(
            np.linalg.norm((guess[:2] + guess[2:] - true[:2] - true[2:]) / 2) / (true[2:] - true[:2]).max()
        )
    return float(np.median(errors))


def test_a_box_model_is_fitted_from_complete_faces_and_needs_every_mapped_point(five, embedded_shapes):
    reference, regression = fit_box_model(embedded_shapes, five)
    assert reference.shape == (5, 2) and regression.shape == (11, 4)
    points = five.project(embedded_shapes[0])
    points[2] = np.nan
    with pytest.raises(ValueError, match="4 of the 5 mapped points"):
        estimate_box(points, five)
    with pytest.raises(ValueError, match="no box model"):
        estimate_box(five.project(embedded_shapes[0]), replace(five, box_reference=None, box_regression=None))


def write_mtfl(folder, shapes, mapping, attributes: list[str] | None = None) -> None:
    """An MTFL-format folder (train.csv, attributes.csv, images/) of faces projected from 68 points."""
    import cv2

    (folder / "images").mkdir(parents=True)
    rows, attrs = ["file,x0,y0,x1,y1,x2,y2,x3,y3,x4,y4"], ["file,gender,smiling,glasses,head_pose"]
    for i, shape in enumerate(shapes):
        name = f"images/lfw_Some_One_{i + 1:04d}.jpg" if i % 2 else f"images/net_{i}_0_0.jpg"
        cv2.imwrite(
            str(folder / name),
            np.full((int(shape[:, 1].max()) + 40, int(shape[:, 0].max()) + 40, 3), 90, np.uint8),
        )
        rows.append(name + "," + ",".join(f"{v:.2f}" for v in mapping.project(shape).ravel()))
        attrs.append(f"{name},1,{1 + i % 2},2,{(1, 3, 5)[i % 3]}")
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    (folder / "attributes.csv").write_text("\n".join(attributes or attrs) + "\n")


def test_the_mtfl_reader_turns_attributes_into_flags_and_identities(tmp_path, five, embedded_shapes):
    write_mtfl(tmp_path, embedded_shapes[:6], five)
    records = read_mtfl(tmp_path)
    assert [r.num_points for r in records] == [5] * 6
    assert [r.flags["pose"] for r in records] == [True, False, True, True, False, True]  # classes 1, 3, 5
    assert [r.flags["expression"] for r in records] == [True, False] * 3
    assert records[1].identity == "lfw_Some_One" and records[0].identity == "net_0_0_0"


@pytest.mark.parametrize(
    ("row", "problem"),
    [("images/x.jpg,1,1,2,7", "head_pose must be one of"), ("images/x.jpg,1,1,2", "expected 5 columns")],
)
def test_a_bad_mtfl_attribute_row_is_refused_naming_the_line(tmp_path, five, embedded_shapes, row, problem):
    write_mtfl(tmp_path, embedded_shapes[:2], five, ["file,gender,smiling,glasses,head_pose", row])
    with pytest.raises(ValueError, match=f"attributes.csv:2: {problem}"):
        read_mtfl(tmp_path)


@pytest.mark.slow
def test_a_68_point_model_trains_on_68_point_and_five_point_faces(tmp_path, five, embedded_shapes, capsys):
    """`python -m data mtfl` cuts five-point faces like 68-point ones; a run given both trains through
    the derived points, keeps the other faces' profile classes, and validates on the 68 points."""
    from pfld.cli.data import main as prepare_main
    from pfld.training.loop import train
    from tests.conftest import TINY_TRAINING, compose_train

    write_mtfl(tmp_path / "mtfl", embedded_shapes[:20] * 1.5 + 10, five)
    manifest = prepare_main(["mtfl", "--root", str(tmp_path / "mtfl"), "--out", str(tmp_path / "mtfl5")])
    assert manifest["settings"]["crop_policy"]["box_source"] == "estimated"
    assert manifest["splits"]["train"]["classes"]["profile"] == 13  # head pose 1 or 5: i % 3 != 1 of 20
    mtfl = tmp_path / "mtfl5" / "train"
    csv = EMBEDDED / "train.csv"
    train_sources = (
        "data.train=[{_target_:pfld.data.readers.read_landmark_csv,_partial_:true,"
        f"csv_path:'{csv}'}},{{_target_:pfld.data.store.load_faces,_partial_:true,folder:'{mtfl}'}}]"
    )
    metrics = train(compose_train([*TINY_TRAINING, train_sources, "validate_best=true"], tmp_path / "run"))
    assert metrics["val/nme"] == pytest.approx(metrics["val/nme_mean_shape"], rel=0.3)  # two steps
    assert "five_point faces mapped to ibug68 (2 derived points)" in capsys.readouterr().out


def test_faces_of_a_scheme_without_a_mapping_or_validation_faces_of_another_scheme_are_refused(tmp_path):
    from pfld.data.datamodule import LandmarkDataModule
    from pfld.data.store import load_faces

    faces = five_point_faces(
        np.random.default_rng(0).uniform(40, 120, (4, 68, 2)), load_mapping("five_point", "ibug68")
    )
    save_faces(
        replace(faces, scheme="kaggle15", landmarks=np.full((4, 15, 2), 50.0, np.float32)), tmp_path / "k"
    )
    save_faces(faces, tmp_path / "f")
    ibug = [lambda: load_faces(tmp_path / "f")]
    module = LandmarkDataModule(train=[lambda: load_faces(tmp_path / "k")], val=ibug, scheme=IBUG)
    with pytest.raises(
        ValueError, match="'kaggle15' faces but the model's scheme is 'ibug68'.*no shipped mapping"
    ):
        module.setup()
    module = LandmarkDataModule(train=ibug, val=ibug, scheme=IBUG)
    with pytest.raises(
        ValueError, match="5-point 'five_point' faces.*val faces must be of the model's scheme"
    ):
        module.setup()


def test_concatenating_faces_with_and_without_a_pose_flag_keeps_profile_classes(five, embedded_shapes):
    from pfld.data.attributes import PoseThresholds, class_memberships, with_pose_flag

    faces = five_point_faces(embedded_shapes[:2], five)
    other = replace(
        faces,
        flags=np.zeros((2, 0), bool),
        flag_names=(),
        angles=np.array([[45.0, 0, 0], [5.0, 0, 0]], np.float32),
    )
    combined = concat_faces(
        with_pose_flag([replace(faces, flags=np.ones((2, 1), bool)), other], PoseThresholds())
    )
    profile = class_memberships(combined)[:, 0]
    assert profile.tolist() == [1, 1, 1, 0], "the yaw-45 face stays profile, the yaw-5 one frontal"


@pytest.mark.slow
def test_pseudo_labels_fill_the_missing_points_keep_the_annotated_ones_and_drop_disagreeing_faces(
    tmp_path, tiny_checkpoint, five, embedded_shapes
):
    """A 68-point model labels five-point faces: annotated points stay, the other 63 are the model's,
    each point's source is kept, and with a strict threshold faces are dropped and counted."""
    from pfld.cli.data import main as prepare_main
    from pfld.data.cache import ANNOTATED, PSEUDO
    from pfld.data.store import load_faces

    write_mtfl(tmp_path / "mtfl", embedded_shapes[:12] * 1.5 + 10, five)
    prepare_main(["mtfl", "--root", str(tmp_path / "mtfl"), "--out", str(tmp_path / "mtfl5")])
    split, out = tmp_path / "mtfl5" / "train", tmp_path / "labelled"
    args = ["pseudo-label", "--model", str(tiny_checkpoint), "--split", str(split), "--out", str(out)]
    summary = prepare_main([*args, "--threshold", "1000"])
    assert summary["kept"] == 12 and summary["dropped"] == 0
    # the manifest names the teacher by its bytes (a zoo file may later be replaced by its student)
    from pfld.io.digest import sha256_file
    from pfld.teacher.pseudo_label import MANIFEST_FILE

    assert json.loads((out / MANIFEST_FILE).read_text())["checkpoint_sha256"] == [
        sha256_file(tiny_checkpoint)
    ]
    faces, original = load_faces(out), load_faces(split)
    assert faces.scheme == "ibug68" and faces.num_points == 68 and not np.isnan(faces.landmarks).any()
    assert (faces.point_sources[:, [30, 48, 54]] == ANNOTATED).all()
    assert (np.delete(faces.point_sources, [30, 48, 54], axis=1) == PSEUDO).all()
    np.testing.assert_allclose(faces.landmarks[:, [30, 48, 54]], original.landmarks[:, 2:])
    assert np.isfinite(faces.angles).all(), "completed faces get Euler angles"
    median = summary["disagreement_median"]
    strict = prepare_main([*args[:-1], str(tmp_path / "strict"), "--threshold", str(median)])
    assert strict["dropped"] == strict["kept"] == 6, "at the median threshold, half the faces go"
    with pytest.raises(ValueError, match="every face disagrees"):
        prepare_main([*args[:-1], str(tmp_path / "none"), "--threshold", "0"])


def test_train_shares_set_each_sources_share_of_the_batches(tmp_path, five, embedded_shapes):
    from pfld.data.datamodule import LandmarkDataModule
    from pfld.data.store import load_faces

    rng = np.random.default_rng(0)
    faces = five_point_faces(rng.uniform(40, 120, (50, 68, 2)), five)
    full = replace(faces, landmarks=rng.uniform(40, 120, (50, 68, 2)).astype(np.float32), scheme="ibug68")
    save_faces(full.subset(range(10)), tmp_path / "small68")
    save_faces(faces, tmp_path / "large5")
    sources = [lambda: load_faces(tmp_path / "small68"), lambda: load_faces(tmp_path / "large5")]
    module = LandmarkDataModule(
        train=sources, val=sources[:1], scheme=IBUG, num_workers=0, train_shares=[1, 1], batch_size=10
    )
    module.setup()
    drawn = np.concatenate([batch["index"].numpy() for _ in range(8) for batch in module.train_dataloader()])
    assert len(drawn) == 8 * 60 and 0.4 < np.mean(drawn < 10) < 0.6, "half the samples from 10 of 60 faces"
    with pytest.raises(ValueError, match="one non-negative share per train source"):
        LandmarkDataModule(train=sources, scheme=IBUG, train_shares=[1])


def test_train_repeats_list_a_sources_faces_several_times_an_epoch_each_augmented_anew(
    tmp_path, five, embedded_shapes
):
    from pfld.data.datamodule import LandmarkDataModule
    from pfld.data.store import load_faces

    rng = np.random.default_rng(0)
    faces = five_point_faces(embedded_shapes[:30], five)
    faces = replace(
        faces,
        landmarks=embedded_shapes[:30].astype(np.float32),
        scheme="ibug68",
        images=rng.integers(0, 255, faces.images.shape, dtype=np.uint8),
    )
    save_faces(faces.subset(range(10)), tmp_path / "clean")
    save_faces(faces.subset(range(10, 30)), tmp_path / "noisy")
    sources = [lambda: load_faces(tmp_path / "clean"), lambda: load_faces(tmp_path / "noisy")]
    module = LandmarkDataModule(
        train=sources, val=sources[:1], scheme=IBUG, num_workers=0, train_repeats=[3, 1], batch_size=10
    )
    module.setup()
    assert len(module.train_faces) == 50, "the clean source's 10 faces 3 times, the noisy one's 20 once"
    batches = list(module.train_dataloader())
    drawn = np.concatenate([batch["index"].numpy() for batch in batches])
    assert sorted(drawn.tolist()) == list(range(50)), "every copy once an epoch, nothing drawn twice"
    np.testing.assert_array_equal(module.train_faces.landmarks[0], module.train_faces.landmarks[10])
    np.testing.assert_array_equal(module.train_faces.landmarks[30], faces.landmarks[10])
    images = {int(i): image for batch in batches for i, image in zip(batch["index"], batch["image"])}
    assert not torch.equal(images[0], images[10]), "a face's copies are augmented differently"
    with pytest.raises(ValueError, match="one positive integer per train source"):
        LandmarkDataModule(train=sources, scheme=IBUG, train_repeats=[2])
    with pytest.raises(ValueError, match="one positive integer per train source"):
        LandmarkDataModule(train=sources, scheme=IBUG, train_repeats=[2, 0])
    with pytest.raises(ValueError, match="give one of them"):
        LandmarkDataModule(train=sources, scheme=IBUG, train_repeats=[2, 1], train_shares=[1, 1])


def _pseudo_labelled_faces(shapes: np.ndarray, five) -> FaceCache:
    """68-point faces whose left jaw (points 0-7, the subject's right) is a model's, the rest annotated."""
    from pfld.data.cache import ANNOTATED, PSEUDO

    faces = five_point_faces(shapes, five)
    sources = np.full((len(shapes), 68), ANNOTATED, np.uint8)
    sources[:, :8] = PSEUDO
    return replace(faces, landmarks=shapes.astype(np.float32), scheme="ibug68", point_sources=sources)


def test_pseudo_label_flags_reach_the_batch_and_are_renumbered_with_the_points_on_a_flip(
    five, embedded_shapes
):
    from pfld.data.dataset import LandmarkDataset

    faces = _pseudo_labelled_faces(embedded_shapes[:4] * 0.5 + 20, five)
    flip = IBUG.flip_permutation
    for chance, expected in ((0.0, np.arange(68) < 8), (1.0, np.isin(np.arange(68), flip[:8]))):
        transform = build_train_transform(112, flip, flip=chance, occlusion=0.0)
        sample = LandmarkDataset(faces, transform, IBUG)[0]
        assert sample["pseudo"].dtype == torch.bool
        assert sample["pseudo"].numpy().tolist() == expected.tolist(), f"flip chance {chance}"
    assert np.array_equal(flip[:8], np.arange(16, 8, -1)), "the subject's right jaw becomes the left"
    plain = LandmarkDataset(replace(faces, point_sources=None), transform, IBUG)[0]
    assert "pseudo" not in plain, "faces without sources give the batches they gave before"


def _ibug_module(tmp_path, data, **options):
    """The default config's PFLDModule for 68-point faces with ``data``'s mean and std, seeded, in eval
    mode; ``options`` are PFLDModule's keyword arguments (distill_weight, pseudo_weight)."""
    from pfld.training.module import PFLDModule
    from tests.conftest import compose_train

    cfg = compose_train([], tmp_path)
    description = {"input_size": 112, "crop_scale": 1.2, "mean": list(data.mean), "std": list(data.std),
                   "scheme": "ibug68", "num_points": 68, "normalization": [36, 45]}  # fmt: skip
    torch.manual_seed(0)
    return PFLDModule(cfg.model, cfg.loss, cfg.optimizer, description, **options).eval()


def test_pseudo_weight_weighs_pseudo_labelled_points_in_the_training_loss(tmp_path, five, embedded_shapes):
    """pseudo_weight 0 trains on the annotated points alone; 1 (the default) weighs every point the same."""
    from pfld.data.dataset import LandmarkDataset
    from pfld.data.transforms import build_eval_transform

    faces = _pseudo_labelled_faces(embedded_shapes[:6] * 0.5 + 20, five)
    dataset = LandmarkDataset(faces, build_eval_transform(112), IBUG)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    module = _ibug_module(tmp_path, dataset, pseudo_weight=0.0)
    batch = module.on_after_batch_transfer(batch, 0)
    annotated_only = dict(batch, visible=batch["visible"] & ~batch["pseudo"])
    with torch.no_grad():
        zero = module.compute_loss(batch)[0]
        module.hparams.pseudo_weight = 1.0
        one, plain = module.compute_loss(batch)[0], module.compute_loss(annotated_only)[0]
        without_flags = module.compute_loss({k: v for k, v in batch.items() if k != "pseudo"})[0]
    torch.testing.assert_close(zero, plain)
    assert torch.equal(one, without_flags) and not torch.allclose(one, zero)
    with pytest.raises(ValueError, match="pseudo_weight"):
        _ibug_module(tmp_path, dataset, pseudo_weight=-0.5)


@pytest.mark.slow
def test_distillation_adds_an_l1_loss_towards_the_teacher_points_a_pseudo_labelled_split_carries(
    tmp_path, tiny_checkpoint
):
    """68-point faces labelled by an ensemble keep every annotated face (nothing on them is a guess) and
    carry the teacher's points, flipped with the face; distill_weight adds exactly w * L1 to the loss."""
    from pfld.cli.data import main as prepare_main
    from pfld.data.datamodule import LandmarkDataModule
    from pfld.data.store import load_faces
    from pfld.losses.points import l1_loss
    from pfld.training.loop import train
    from tests.conftest import TINY_TRAINING, compose_train

    prepare_main(["csv", "--split", f"train={EMBEDDED / 'train.csv'}", "--out", str(tmp_path / "emb")])
    split, out = tmp_path / "emb" / "train", tmp_path / "taught"
    model = ["--model", str(tiny_checkpoint)]
    summary = prepare_main(
        ["pseudo-label", *model, *model, "--split", str(split), "--out", str(out), "--threshold", "0"]
    )
    assert summary["models"] == 2 and summary["dropped"] == 0, "complete faces are kept at any threshold"
    faces = load_faces(out)
    assert faces.teacher.shape == faces.landmarks.shape and np.isfinite(faces.teacher).all()

    sources = [lambda: load_faces(out)]
    data = LandmarkDataModule(train=sources, val=sources, scheme=IBUG, num_workers=0, batch_size=8)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["teacher"].shape == batch["landmarks"].shape and batch["teacher_visible"].all()
    module = _ibug_module(tmp_path, data, distill_weight=0.5)
    batch = module.on_after_batch_transfer(batch, 0)
    with_teacher, landmarks, _ = module.compute_loss(batch)
    module.hparams.distill_weight = 0.0
    without, _, _ = module.compute_loss(batch)
    expected = 0.5 * l1_loss(landmarks, batch["teacher"], batch["teacher_visible"])
    torch.testing.assert_close(with_teacher - without, expected)

    metrics = train(compose_train([*TINY_TRAINING, f"data.train=[{{_target_:pfld.data.store.load_faces,_partial_:true,folder:'{out}'}}]", "distill_weight=1.0"], tmp_path / "run"))  # fmt: skip
    assert metrics["val/nme"] == pytest.approx(metrics["val/nme_mean_shape"], rel=0.3)  # two steps


@pytest.mark.slow
def test_an_exported_onnx_model_teaches_like_its_checkpoint_alone_or_in_an_ensemble(tmp_path):
    from pfld.cli.data import main as prepare_main
    from pfld.data.store import load_faces
    from pfld.inference.zoo import zoo_model

    prepare_main(["csv", "--split", f"train={EMBEDDED / 'train.csv'}", "--out", str(tmp_path / "emb")])
    split = tmp_path / "emb" / "train"
    taught = {}
    for name, models in {
        "ckpt": [zoo_model(file="model.ckpt")],
        "onnx": [zoo_model(file="model.onnx")],
        "mixed": [zoo_model(file="model.onnx"), zoo_model(file="model.ckpt")],
    }.items():
        args = [a for m in models for a in ("--model", str(m))]
        prepare_main(["pseudo-label", *args, "--split", str(split), "--out", str(tmp_path / name)])
        taught[name] = load_faces(tmp_path / name).teacher
    assert taught["ckpt"].shape[1:] == (68, 2)
    np.testing.assert_allclose(taught["onnx"], taught["ckpt"], atol=0.01)  # pixels of the stored crop
    np.testing.assert_allclose(taught["mixed"], taught["ckpt"], atol=0.01)
    with pytest.raises(ValueError, match=r"model\.pt.*\.ckpt checkpoint or an \.onnx"):
        (tmp_path / "model.pt").write_bytes(b"")
        prepare_main(
            [
                "pseudo-label",
                "--model",
                str(tmp_path / "model.pt"),
                "--split",
                str(split),
                "--out",
                str(tmp_path / "x"),
            ]
        )


class ConstantPoints:
    """A `LandmarkModel` stub: the same (K, 2) unit points for every crop."""

    def __init__(self, spec, units: np.ndarray) -> None:
        self.spec, self.units = spec, units

    @property
    def has_pose(self) -> bool:
        return False

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, None]:
        return np.repeat(self.units[None], len(images), axis=0), None


@pytest.mark.parametrize("faces_scale", [1.2, 1.0])
def test_faces_cut_another_way_are_predicted_in_a_crop_of_the_models_scale_about_their_centre(faces_scale):
    """No refining: the model sees the square the faces were cut from, widened to its own crop scale
    (Kaggle's whole 96 px images are crop scale 1.0, a 68-point model's crop 1.2); at the model's own
    scale this is exactly the stored crop the batch path predicts on."""
    from pfld.inference.spec import ModelSpec
    from pfld.teacher.pseudo_label import _predict_pixels, _predict_refined

    spec = ModelSpec("ibug68", 68, 112, 1.2, (0.5,) * 3, (0.25,) * 3, (36, 45), "inter_ocular")
    units = np.random.default_rng(0).uniform(0.1, 0.9, (68, 2))
    model = ConstantPoints(spec, units)
    crop, border = 112, 28  # five_point_faces' blank crops
    faces = replace(
        five_point_faces(np.zeros((2, 68, 2)), load_mapping("five_point", "ibug68")), crop_scale=faces_scale
    )
    refined = _predict_refined(faces, [model], refine=0)
    side = crop * spec.crop_scale / faces_scale
    centre = border + (crop - 1) / 2  # the stored crop's centre in pixel-centre coordinates
    np.testing.assert_allclose(refined, np.repeat((centre + (units - 0.5) * side)[None], 2, 0), atol=1e-4)
    if faces_scale == spec.crop_scale:
        np.testing.assert_allclose(
            refined, _predict_pixels(faces, [model], load_scheme("five_point"), 2), atol=1e-4
        )


@pytest.mark.slow
def test_pseudo_labels_complete_kaggle_faces_in_their_own_scheme_from_a_68_point_model(
    tmp_path, tiny_checkpoint
):
    """--keep-scheme: Kaggle's 15-point faces keep their annotation and get the 68-point model's points
    for the rest (eye centres as the mean of its eye points), refined twice as their crop differs."""

    from pfld.cli.data import main as prepare_main
    from pfld.data.cache import ANNOTATED, PSEUDO
    from pfld.data.store import load_faces

    kaggle = FIXTURES / "kaggle"
    mapping = ROOT / "scripts" / "mappings" / "kaggle15-ibug68.yaml"
    prepare_main(["kaggle", "--train", str(kaggle / "training.csv"), "--out", str(tmp_path / "kaggle")])
    split, out = tmp_path / "kaggle" / "train", tmp_path / "pseudo"
    summary = prepare_main(
        [
            "pseudo-label",
            "--model",
            str(tiny_checkpoint),
            "--split",
            str(split),
            "--out",
            str(out),
            "--mapping",
            str(mapping),
            "--keep-scheme",
            "--threshold",
            "1000",
        ]
    )
    original, faces = load_faces(split), load_faces(out)
    assert (summary["from_scheme"], summary["to_scheme"], summary["model_scheme"]) == (
        "kaggle15",
        "kaggle15",
        "ibug68",
    )
    assert summary["refine"] == 2 and summary["kept"] == len(original)
    assert faces.scheme == "kaggle15" and faces.num_points == 15 and not np.isnan(faces.landmarks).any()
    labelled = ~np.isnan(original.landmarks[..., 0])
    assert (~labelled).any(), "the fixture has faces with missing points"
    np.testing.assert_array_equal(faces.point_sources, np.where(labelled, ANNOTATED, PSEUDO))
    np.testing.assert_allclose(faces.landmarks[labelled], original.landmarks[labelled])
    np.testing.assert_allclose(faces.landmarks[~labelled], faces.teacher[~labelled])
    assert np.isfinite(faces.angles).all(), "completed faces get Euler angles"


def test_a_68_point_model_is_scored_on_five_point_faces_through_its_derived_points(
    tmp_path, tiny_checkpoint, five, embedded_shapes, capsys
):
    """scripts/derived_nme.py and evaluate.py data=mtfl5: each face's error over its five annotated points,
    the model's eye centres the means of its six eye points, over the *annotated* eye-centre distance;
    MTFL's pose classes."""
    import sys

    from pfld.cli.data import main as prepare_main
    from pfld.data.store import load_faces
    from pfld.inference.models import load_landmark_model
    from pfld.teacher.pseudo_label import predict_faces

    write_mtfl(tmp_path / "mtfl", embedded_shapes[:6] * 1.5 + 10, five)
    prepare_main(["mtfl", "--root", str(tmp_path / "mtfl"), "--out", str(tmp_path / "mtfl5")])
    split = tmp_path / "mtfl5" / "train"
    sys.path.insert(0, str(ROOT / "scripts"))
    from derived_nme import main as derived_nme

    report = tmp_path / "derived.json"
    args = ["--split", str(split), "--model", f"a={tiny_checkpoint}", "--model", f"b={tiny_checkpoint}"]
    derived_nme([*args, "--json", str(report)])
    faces = load_faces(split)
    points = predict_faces(
        faces, [load_landmark_model(tiny_checkpoint, with_pose=False)], load_scheme("five_point")
    )
    guessed = np.concatenate(
        [
            points[:, 36:42].mean(1, keepdims=True),
            points[:, 42:48].mean(1, keepdims=True),
            points[:, [30, 48, 54]],
        ],
        axis=1,
    )
    truth = faces.landmarks.astype(np.float64)
    pupils = np.linalg.norm(truth[:, 0] - truth[:, 1], axis=1)
    expected = np.linalg.norm(truth - guessed, axis=2).mean(axis=1) / pupils
    scored = json.loads(report.read_text())
    np.testing.assert_allclose(scored["models"]["a"]["nme"], expected, atol=2e-5)
    # each point's offset (mean residual), and the NME once the offsets are taken off every face
    residuals = (guessed - truth) / pupils[:, None, None]
    offsets = residuals.mean(axis=0)
    np.testing.assert_allclose(list(scored["models"]["a"]["per_point_offset"].values()), offsets, atol=1e-4)
    centred = np.linalg.norm(residuals - offsets, axis=2).mean(axis=1)
    assert scored["models"]["a"]["mean_without_offsets"] == pytest.approx(centred.mean(), abs=1e-5)
    # evaluate.py data=mtfl5 scores the same way: the model's eye centres, the annotated pupils
    from pfld.evaluation.checkpoint import evaluate
    from tests.conftest import compose_config

    overrides = [f"ckpt={tiny_checkpoint}", "data=mtfl5", f"paths.data_dir={tmp_path}", "data.num_workers=0"]
    summary = evaluate(compose_config("evaluate", overrides, tmp_path / "evaluated"))
    assert summary["faces"] == 6 and summary["normalization"] == "inter_pupil"
    assert summary["nme"] == pytest.approx(expected.mean(), abs=2e-5)
    assert scored["models"]["a"]["groups"]["left_profile"][1] == 2  # head pose 1 of faces 0 and 3
    assert scored["pairs"] == [
        {
            "a": "a",
            "b": "b",
            "mean": 0.0,
            "se": 0.0,
            "b_better": 0.0,
            "without_offsets": {"mean": 0.0, "se": 0.0},
        }
    ]
    assert "| b - a | +0.00000 |" in capsys.readouterr().out
