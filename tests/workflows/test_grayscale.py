"""One-channel (grey) models: ``data.channels=1`` builds a PFLD whose first convolution takes the luma
of the RGB crops, described by `ModelSpec.channels` (``channels`` in checkpoints, ``pfld.channels`` in
ONNX files), exported as (N, 1, S, S) and run by the photo predictor on RGB photos."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pfld.data.normalize import IMAGENET_MEAN, IMAGENET_STD, LUMA, channel_values, grey, model_input
from pfld.data.readers import read_pts
from pfld.evaluation.checkpoint import adopt_input
from pfld.inference import ModelSpec, TorchLandmarkModel
from pfld.inference.crops import normalise
from pfld.inference.spec import check_metadata, decode_metadata, encode_metadata
from pfld.io.images import read_image
from pfld.models import PFLD, PFLDBackbone
from pfld.predict import Predictor
from pfld.predict.box_mapping import DLIB_HOG_MAPPING
from pfld.training.config_checks import _resume_mismatches, model_problems
from pfld.training.module import PFLDModule
from tests.conftest import FIXTURES, OLD_DATA_DESCRIPTION, TINY_TRAINING, compose_config, compose_train

PHOTO = FIXTURES / "photos" / "1204062305.jpg"
GREY_MEAN, GREY_STD = channel_values(IMAGENET_MEAN, 1), channel_values(IMAGENET_STD, 1)


def grey_spec(size: int = 96) -> ModelSpec:
    description = OLD_DATA_DESCRIPTION | {"input_size": size, "channels": 1}
    return ModelSpec.from_hparams(description | {"mean": list(GREY_MEAN), "std": list(GREY_STD)})


def grey_model(size: int = 96, auxiliary: bool = False) -> PFLD:
    torch.manual_seed(0)
    return PFLD(PFLDBackbone(0.25, in_channels=1), 68, size, auxiliary=auxiliary).eval()


def rgb_crops(count: int = 4, size: int = 96, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (count, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


# -- the model -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [96, 112])
def test_one_channel_pfld_takes_grey_batches_at_96_and_112(size: int) -> None:
    model = PFLD(PFLDBackbone(0.25, in_channels=1), 68, size, auxiliary=True).eval()
    assert model.in_channels == 1 and model.backbone.conv1[0].in_channels == 1
    images = torch.randn(2, 1, size, size)
    assert model(images).shape == (2, 68, 2)
    landmarks, angles = model.forward_with_pose(images)
    assert landmarks.shape == (2, 68, 2) and angles.shape == (2, 3)
    with pytest.raises(ValueError, match=rf"expected input \(B, 1, {size}, {size}\)"):
        model(torch.randn(2, 3, size, size))


def test_rgb_pfld_is_unchanged_and_refuses_grey() -> None:
    model = PFLD(PFLDBackbone(0.25), 68, 96, auxiliary=False).eval()
    assert model.in_channels == 3 and model.backbone.conv1[0].in_channels == 3
    with pytest.raises(ValueError, match=r"expected input \(B, 3, 96, 96\)"):
        model(torch.randn(1, 1, 96, 96))
    with pytest.raises(ValueError, match="in_channels"):
        PFLDBackbone(0.25, in_channels=0)


def test_timm_backbone_passes_in_channels_as_in_chans() -> None:
    from pfld.models.timm_backbone import TimmBackbone

    with pytest.raises(ValueError, match="in_chans.*in_channels"):
        TimmBackbone("mobilenetv3_small_100", in_chans=1)
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm not installed")
    backbone = TimmBackbone("mobilenetv3_small_100", in_channels=1)
    model = PFLD(backbone, 68, 96, auxiliary=False).eval()
    assert model.in_channels == 1 and model(torch.randn(1, 1, 96, 96)).shape == (1, 68, 2)


# -- grey conversion and normalisation -------------------------------------------------------------
def test_grey_is_bt601_luma_and_model_input_normalises_it() -> None:
    crops = rgb_crops()
    pixels = crops.double()
    luma = 0.299 * pixels[..., 0] + 0.587 * pixels[..., 1] + 0.114 * pixels[..., 2]  # (B, S, S)
    expected = ((luma / 255 - GREY_MEAN[0]) / GREY_STD[0])[:, None]  # (B, 1, S, S)
    batch = model_input(crops, GREY_MEAN, GREY_STD)
    assert batch.shape == (4, 1, 96, 96) and batch.dtype == torch.float32
    torch.testing.assert_close(batch.double(), expected, atol=1e-5, rtol=0)
    assert grey(crops.float()).shape == (4, 96, 96, 1)
    assert LUMA == (0.299, 0.587, 0.114)


def test_a_grey_photo_stored_as_rgb_keeps_its_values() -> None:
    values = torch.arange(256, dtype=torch.uint8).reshape(16, 16)
    as_rgb = values[..., None].expand(16, 16, 3)
    torch.testing.assert_close(grey(as_rgb.float())[..., 0], values.float(), atol=1e-4, rtol=0)


def test_rgb_model_input_is_untouched() -> None:
    crops = rgb_crops()
    batch = model_input(crops)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = ((crops.double() / 255 - mean.double()) / std.double()).permute(0, 3, 1, 2)
    assert batch.shape == (4, 3, 96, 96)
    torch.testing.assert_close(batch.double(), expected, atol=1e-5, rtol=0)


def test_predictor_normalise_and_model_input_agree_for_grey_and_rgb() -> None:
    crops = rgb_crops()
    for mean, std in ((GREY_MEAN, GREY_STD), (IMAGENET_MEAN, IMAGENET_STD)):
        ours = normalise(crops.numpy(), mean, std)
        assert ours.shape == (4, len(mean), 96, 96) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, model_input(crops, mean, std).numpy(), atol=1e-5)


def test_channel_values_reduce_rgb_to_luma_and_check_counts() -> None:
    assert GREY_MEAN == pytest.approx((0.458971,)) and GREY_STD == pytest.approx((0.225609,))
    assert channel_values([0.5], 1) == (0.5,)
    assert channel_values(IMAGENET_MEAN, 3) == IMAGENET_MEAN
    with pytest.raises(ValueError, match="data.std must hold 3 value"):
        channel_values([0.5], 3, "data.std")
    with pytest.raises(ValueError, match="3 \\(RGB\\) or 1"):
        channel_values([0.5, 0.5], 2)
    with pytest.raises(ValueError, match="3 \\(RGB\\) or 1 \\(grey\\)"):
        model_input(rgb_crops(), (0.5, 0.5), (0.2, 0.2))


# -- the model's description ---------------------------------------------------------------------------
def test_spec_round_trips_channels_through_hparams_and_metadata() -> None:
    spec = grey_spec()
    assert spec.channels == 1 and spec.mean == GREY_MEAN and spec.to_hparams()["channels"] == 1
    assert ModelSpec.from_hparams(spec.to_hparams()) == spec
    metadata = decode_metadata(encode_metadata(spec.to_metadata()))
    assert metadata["pfld.channels"] == 1 and "(N, 1, S, S)" in metadata["pfld.input"]
    assert ModelSpec.from_metadata(metadata) == spec
    check_metadata(metadata, 96, 68, channels=1)
    with pytest.raises(ValueError, match="pfld.channels=1 but the model has 3"):
        check_metadata(metadata, 96, 68)


def test_legacy_checkpoints_and_files_without_channels_are_rgb() -> None:
    legacy = ModelSpec.from_hparams(OLD_DATA_DESCRIPTION)
    assert legacy.channels == 3
    assert "channels" not in legacy.to_hparams()  # RGB checkpoints and files stay as they were
    metadata = decode_metadata(encode_metadata(legacy.to_metadata()))
    assert "pfld.channels" not in metadata and metadata["pfld.input"].startswith("image: (N, 3, S, S)")
    assert ModelSpec.from_metadata(metadata) == legacy
    assert ModelSpec.from_metadata(metadata | {"pfld.channels": 3}) == legacy
    check_metadata(metadata, 112, 68)


def test_spec_refuses_mean_and_std_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="mean must hold one float"):
        ModelSpec.from_hparams(OLD_DATA_DESCRIPTION | {"channels": 1})
    with pytest.raises(ValueError, match="std must hold three floats"):
        ModelSpec.from_hparams(OLD_DATA_DESCRIPTION | {"std": [0.2]})
    with pytest.raises(ValueError, match="channels must be 3"):
        ModelSpec.from_hparams(OLD_DATA_DESCRIPTION | {"channels": 2})
    metadata = grey_spec().to_metadata() | {"pfld.mean": list(IMAGENET_MEAN)}
    with pytest.raises(ValueError, match="pfld.mean must hold one float"):
        ModelSpec.from_metadata(metadata, where="grey.onnx")


# -- configuration, training batches, evaluation --------------------------------------------------------
def test_data_channels_flows_into_the_model_and_the_batches(tmp_path: Path) -> None:
    cfg = compose_train(["data.channels=1", "data.input_size=96", "data.num_workers=0"], tmp_path)
    assert cfg.model.backbone.in_channels == 1 and not model_problems(cfg)
    datamodule = instantiate(cfg.data)
    assert datamodule.channels == 1 and datamodule.mean == GREY_MEAN and datamodule.std == GREY_STD
    spec = ModelSpec(
        "ibug68", 68, 96, 1.2, datamodule.mean, datamodule.std, (36, 45), channels=datamodule.channels
    )
    module = PFLDModule(cfg.model, cfg.loss, cfg.optimizer, spec.to_hparams(), cfg.scheduler)
    assert module.model.in_channels == 1
    batch = module.on_after_batch_transfer({"image": rgb_crops()}, 0)
    assert batch["image"].shape == (4, 1, 96, 96)
    torch.testing.assert_close(batch["image"], model_input(rgb_crops(), GREY_MEAN, GREY_STD))
    assert module.eval()(batch["image"]).shape == (4, 68, 2)
    with pytest.raises(ValueError, match="model takes 1 input channels but the data has 3"):
        PFLDModule(cfg.model, cfg.loss, cfg.optimizer, OLD_DATA_DESCRIPTION, cfg.scheduler)
    bad = compose_train(["data.channels=2"], tmp_path)
    assert any("data.channels must be 3 (RGB) or 1" in p for p in model_problems(bad))


def test_resuming_a_checkpoint_from_before_channels_is_not_a_backbone_change(tmp_path: Path) -> None:
    cfg = compose_train([], tmp_path)
    saved_model = OmegaConf.to_container(cfg.model, resolve=True)
    saved_model["backbone"].pop("in_channels")
    hparams = {"model": saved_model, "data": dict(OLD_DATA_DESCRIPTION)}
    assert _resume_mismatches(hparams, cfg, "old.ckpt") == []
    grey = compose_train(["data.channels=1"], tmp_path)
    assert any("backbone" in p for p in _resume_mismatches(hparams, grey, "old.ckpt"))


def test_evaluation_adopts_the_checkpoints_channels(tmp_path: Path) -> None:
    cfg = compose_config("evaluate", ["ckpt=x.ckpt"], tmp_path)
    adopt_input(cfg.data, grey_spec())
    assert cfg.data.channels == 1 and list(cfg.data.mean) == list(GREY_MEAN)
    assert instantiate(cfg.data).mean == GREY_MEAN


# -- export -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grey_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[PFLD, Path]:
    pytest.importorskip("onnxruntime")
    from export.onnx_export import export_onnx

    model = grey_model()
    crops = model_input(rgb_crops(8), GREY_MEAN, GREY_STD).contiguous().numpy()
    path = tmp_path_factory.mktemp("grey") / "grey.onnx"
    exported = export_onnx(model, path, grey_spec().to_metadata(), check_images=crops)
    assert exported.check_images == 8 and exported.landmark_difference <= 1e-4
    return model, path


def test_grey_onnx_takes_one_channel_and_matches_pytorch(grey_onnx: tuple[PFLD, Path]) -> None:
    from export.onnx_export import max_abs_difference, random_images
    from pfld.inference import OnnxLandmarkModel

    model, path = grey_onnx
    onnx_model = OnnxLandmarkModel(path)
    assert onnx_model.spec == grey_spec()
    assert onnx_model.session.get_inputs()[0].shape[1:] == [1, 96, 96]
    assert max_abs_difference(model, path, random_images(96, 3, channels=1))["landmarks"] <= 1e-4
    with pytest.raises(ValueError, match=r"check_images must be \(N, 1, 96, 96\)"):
        from export.onnx_export import export_onnx

        export_onnx(
            model, path.with_name("x.onnx"), grey_spec().to_metadata(), check_images=random_images(96)
        )


def test_grey_int8_calibrates_on_grey_crops(grey_onnx: tuple[PFLD, Path], tmp_path: Path) -> None:
    from export.calibration import ImageCalibrationReader, as_batch
    from export.quantize import quantize_int8
    from pfld.inference import OnnxLandmarkModel

    _, path = grey_onnx
    crops = model_input(rgb_crops(16), GREY_MEAN, GREY_STD).contiguous().numpy()
    reader = ImageCalibrationReader([crops[:8], crops[8:]])
    assert reader.image_shape == (1, 96, 96) and as_batch(crops[0]).shape == (1, 1, 96, 96)
    int8 = OnnxLandmarkModel(quantize_int8(path, tmp_path / "grey_int8.onnx", reader))
    landmarks, _ = int8(crops)
    assert int8.spec.channels == 1 and landmarks.shape == (16, 68, 2) and np.isfinite(landmarks).all()


@pytest.mark.parametrize("fmt", ["ncnn", "mnn", "tflite"])
def test_grey_runtimes_export_and_match_pytorch(
    grey_onnx: tuple[PFLD, Path], tmp_path: Path, fmt: str
) -> None:
    from export import runtimes

    needs = {"ncnn": ("ncnn", "pnnx"), "mnn": ("MNN",), "tflite": ("litert_torch", "ai_edge_litert")}[fmt]
    if any(importlib.util.find_spec(name) is None for name in needs):
        pytest.skip(f"{fmt} not installed")
    model, path = grey_onnx
    if fmt == "ncnn":
        written = runtimes.export_ncnn(model, 96, tmp_path, channels=1)
    elif fmt == "mnn":
        written = runtimes.export_mnn(path, tmp_path)
    else:
        written = runtimes.export_tflite(model, 96, tmp_path, channels=1)
    crops = model_input(rgb_crops(4), GREY_MEAN, GREY_STD).contiguous().numpy()
    runtimes.check_parity(written, model, crops, atol=1e-3)
    sidecar = runtimes.sidecar(written, grey_spec().to_metadata())
    layout = "1 x S x S x 1 (NHWC) float32, grey" if fmt == "tflite" else "1 x 1 x S x S float32, grey"
    assert layout in sidecar.read_text()


# -- the photo predictor -----------------------------------------------------------------------------
class Recording:
    """A `LandmarkModel` that keeps the inputs it was called with."""

    def __init__(self, model) -> None:
        self.model, self.spec, self.inputs = model, model.spec, []

    @property
    def has_pose(self) -> bool:
        return self.model.has_pose

    def __call__(self, images):
        self.inputs.append(np.asarray(images))
        return self.model(images)


def test_predictor_runs_a_grey_model_on_an_rgb_photo(grey_onnx: tuple[PFLD, Path]) -> None:
    from pfld.inference import OnnxLandmarkModel

    model, path = grey_onnx
    image = read_image(PHOTO)
    truth = read_pts(PHOTO.with_name(f"{PHOTO.stem}_1.pts"), 68)
    box = np.concatenate([truth.min(axis=0), truth.max(axis=0)])
    for landmark_model in (TorchLandmarkModel(model, grey_spec()), OnnxLandmarkModel(path)):
        recording = Recording(landmark_model)
        faces = Predictor(recording, mapping=DLIB_HOG_MAPPING, refine=1).predict(image, boxes=[box])
        assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2)
        assert np.isfinite(faces[0].landmarks).all()
        assert [x.shape for x in recording.inputs] == [(1, 1, 96, 96)] * 2


# -- end to end (slow) -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_grey_96_trains_evaluates_exports_and_predicts(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from export.command import FP32_NAME, run_export
    from pfld.evaluation.checkpoint import evaluate
    from pfld.inference import load_landmark_model
    from pfld.training.loop import train

    grey = ["data.channels=1", "data.input_size=96"]
    train(compose_train([*TINY_TRAINING, *grey], tmp_path / "train"))
    checkpoint = next((tmp_path / "train" / "checkpoints").glob("epoch*.ckpt"))
    model = load_landmark_model(checkpoint)
    assert model.spec.channels == 1 and model.spec.input_size == 96 and model.spec.mean == GREY_MEAN
    summary = evaluate(
        compose_config("evaluate", [f"ckpt={checkpoint}", "data.num_workers=0"], tmp_path / "eval")
    )
    assert summary["faces"] == 160
    fast = ["data.num_workers=0", "latency.runs=2", "latency.warmup=1", "latency.sessions=1"]
    fast += ["quantize.calibration_images=16", "parity.images=8"]
    out = tmp_path / "export"
    report = run_export(compose_config("export", [f"ckpt={checkpoint}", f"out={out}", *fast], out))
    assert report["models"]["int8"]["faces"] == 160
    onnx_model = load_landmark_model(out / FP32_NAME)
    assert onnx_model.spec == model.spec.with_pose_output(False)
    assert onnx_model.session.get_inputs()[0].shape[1:] == [1, 96, 96]
    truth = read_pts(PHOTO.with_name(f"{PHOTO.stem}_1.pts"), 68)
    box = np.concatenate([truth.min(axis=0), truth.max(axis=0)])
    faces = Predictor(onnx_model, mapping=DLIB_HOG_MAPPING).predict(read_image(PHOTO), boxes=[box])
    assert len(faces) == 1 and np.isfinite(faces[0].landmarks).all()
