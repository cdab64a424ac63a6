"""Annotation conventions (`data.train_conventions`): the adapters' arithmetic, the batches that carry
each face's convention, and a run that trains them, resumes and leaves them out of the model."""

import copy

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from pfld.data.schemes import load_scheme
from pfld.data.transforms import flip_points
from pfld.training.conventions import ConventionAdapters
from tests.conftest import compose_train

IBUG = load_scheme("ibug68")


def _adapters(linear: bool = False, conventions: int = 3) -> ConventionAdapters:
    adapters = ConventionAdapters(conventions, IBUG.flip_permutation, in_features=5, linear=linear)
    with torch.no_grad():
        adapters.offsets.copy_(
            torch.randn(adapters.offsets.shape, generator=torch.Generator().manual_seed(0))
        )
    return adapters


def test_the_reference_convention_is_left_alone_and_the_others_shifted_by_their_offsets():
    adapters = _adapters()
    points = torch.rand(3, 68, 2)
    out = adapters(points, torch.zeros(3, 5), torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(out[0], points[0])
    torch.testing.assert_close(out[1], points[1] + adapters.offsets[0])
    torch.testing.assert_close(out[2], points[2] + adapters.offsets[1])


def test_on_a_flipped_crop_the_offset_is_the_mirror_image_of_the_unflipped_ones():
    """Annotating a face in convention 1 and then mirroring the crop must equal mirroring first and
    applying the adapter with ``flipped``: the offsets follow the points' renumbering and x changes sign."""
    adapters = _adapters()
    width = 112
    truth = np.random.default_rng(1).uniform(20, 90, (68, 2)).astype(np.float32)
    offset = adapters.offsets[0].detach().numpy()
    annotated_then_flipped = flip_points(truth + offset, width, IBUG.flip_permutation)
    flipped = torch.from_numpy(flip_points(truth, width, IBUG.flip_permutation))[None]
    out = adapters(flipped, torch.zeros(1, 5), torch.tensor([1]), torch.tensor([True]))
    np.testing.assert_allclose(out[0].detach().numpy(), annotated_then_flipped, atol=1e-5)


def test_the_linear_part_starts_at_zero_reads_the_features_and_gets_gradients():
    adapters = _adapters(linear=True, conventions=2)
    points, features = torch.rand(2, 68, 2), torch.randn(2, 5)
    convention, flipped = torch.tensor([1, 0]), torch.tensor([False, False])
    start = adapters(points, features, convention, flipped)
    torch.testing.assert_close(start[0], points[0] + adapters.offsets[0])  # zero weights: offsets alone
    with torch.no_grad():
        adapters.weights.normal_()
    out = adapters(points, features, convention, flipped)
    expected = points[0] + adapters.offsets[0] + (features[0] @ adapters.weights[0]).view(68, 2)
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[1], points[1])
    out.sum().backward()
    assert adapters.weights.grad.abs().sum() > 0 and adapters.offsets.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="convention 2, outside 0..1"):
        adapters(points, features, torch.tensor([2, 0]), flipped)
    with pytest.raises(ValueError, match="convention -1, outside 0..1"):
        adapters(points, features, torch.tensor([0, -1]), flipped)


def test_train_conventions_reach_the_training_batches_with_the_flip(tmp_path):
    from pfld.data.datamodule import LandmarkDataModule
    from pfld.data.readers import read_landmark_csv
    from tests.conftest import ROOT

    csv = ROOT / "data" / "embedded" / "train.csv"

    def source():
        return read_landmark_csv(csv, num_points=68)

    module = LandmarkDataModule(
        train=[source, source],
        val=[source],
        scheme=IBUG,
        num_workers=0,
        batch_size=500,
        train_repeats=[1, 2],
        train_conventions=[0, 1],
    )
    module.setup()
    n = len(module.train_faces) // 3
    assert module.num_conventions == 2
    assert module.face_conventions.tolist() == [0] * n + [1] * (2 * n), "repeats copy the labels too"
    batch = next(iter(module.train_dataloader()))
    assert batch["convention"].dtype == torch.int64 and batch["flipped"].dtype == torch.bool
    order = batch["index"].numpy()
    assert batch["convention"].numpy().tolist() == module.face_conventions[order].tolist()
    assert 0 < batch["flipped"].float().mean() < 1, "about half the crops are mirrored"
    assert "convention" not in next(iter(module.val_dataloader())), "validation is the reference's"
    for bad, message in (([0], "one integer >= 0 per train source"), ([1, 2], "labels no source 0")):
        with pytest.raises(ValueError, match=message):
            LandmarkDataModule(train=[source, source], scheme=IBUG, train_conventions=bad)


@pytest.mark.slow
def test_a_run_trains_the_adapters_resumes_them_and_leaves_them_out_of_the_model(tmp_path):
    from pfld.inference import load_checkpoint
    from pfld.training.loop import train

    def config(out, *overrides):
        cfg = compose_train(
            [
                "logger=csv",
                "data.num_workers=0",
                "data.batch_size=16",
                "trainer.limit_train_batches=2",
                *overrides,
            ],
            out,
        )
        with open_dict(cfg):
            cfg.data.train = [cfg.data.train[0], copy.deepcopy(cfg.data.train[0])]
            cfg.data.train_conventions = [0, 1]
        return cfg

    first = tmp_path / "first"
    train(config(first, "trainer.max_epochs=1"))
    last = first / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert state["conventions.offsets"].shape == (1, 68, 2) and state["conventions.offsets"].abs().sum() > 0
    assert state["conventions.weights"].shape == (1, 176, 136)
    resumed = tmp_path / "resumed"
    metrics = train(config(resumed, "trainer.max_epochs=2", f"ckpt_path={last}"))
    after = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert after["global_step"] == 4 and not torch.equal(
        after["state_dict"]["conventions.offsets"], state["conventions.offsets"]
    )
    model, _ = load_checkpoint(metrics["best_checkpoint"])
    assert not any("convention" in key for key in model.state_dict())
