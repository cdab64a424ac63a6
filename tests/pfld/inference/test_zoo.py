"""The model zoo's inference side: slim (float16) checkpoints and finding zoo files. The committed
``pretrained/`` folders are tested in tests/export/test_zoo.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pfld.data.schemes import load_scheme
from pfld.inference import load_checkpoint
from pfld.inference.checkpoint import read_checkpoint
from pfld.inference.zoo import slim_checkpoint, zoo_model
from pfld.training.module import PFLDModule
from pfld.training.warm_start import warm_start
from tests.conftest import OLD_DATA_DESCRIPTION, compose_train, save_module_checkpoint, wflw_module


def _training_checkpoint(tmp_path: Path, conventions: int = 1) -> tuple[Path, PFLDModule]:
    """A default 68-point module's checkpoint with the parts a training checkpoint has besides weights
    (and with ``conventions`` > 1, the run-only adapters of `data.train_conventions`)."""
    cfg = compose_train([], tmp_path)
    module = PFLDModule(cfg.model, cfg.loss, cfg.optimizer, OLD_DATA_DESCRIPTION, cfg.scheduler)
    module.set_conventions(conventions, load_scheme("ibug68").flip_permutation)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    path = save_module_checkpoint(module, tmp_path / "run.ckpt")
    checkpoint = torch.load(path, weights_only=False)
    checkpoint |= {"optimizer_states": [{"state": {"m": torch.zeros(1000)}}], "loops": {}, "epoch": 7}
    torch.save(checkpoint, path)
    return path, module


def test_a_slim_checkpoint_keeps_weights_and_hyper_parameters_only(tmp_path: Path) -> None:
    path, module = _training_checkpoint(tmp_path)
    slim = read_checkpoint(slim_checkpoint(path, tmp_path / "slim.ckpt"))
    assert set(slim) == {"state_dict", "hyper_parameters", "epoch"}
    for name, tensor in module.state_dict().items():
        torch.testing.assert_close(slim["state_dict"][name], tensor, rtol=0, atol=0, msg=name)


def test_a_slim_checkpoint_leaves_out_the_runs_convention_adapters(tmp_path: Path) -> None:
    path, module = _training_checkpoint(tmp_path, conventions=2)
    assert any(name.startswith("conventions.") for name in module.state_dict())
    slim = read_checkpoint(slim_checkpoint(path, tmp_path / "slim.ckpt"))
    kept = {name for name in module.state_dict() if not name.startswith("conventions.")}
    assert set(slim["state_dict"]) == kept
    model, _spec = load_checkpoint(tmp_path / "slim.ckpt")
    assert model.num_points == 68


def test_float16_storage_halves_the_file_and_loads_as_float32(tmp_path: Path) -> None:
    path, module = _training_checkpoint(tmp_path)
    full = slim_checkpoint(path, tmp_path / "full.ckpt")
    half = slim_checkpoint(path, tmp_path / "half.ckpt", torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    model, _spec = load_checkpoint(half, with_pose=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    rounded = {
        k[len("model.") :]: v.half().float()
        for k, v in module.state_dict().items()
        if k.startswith("model.") and v.is_floating_point()
    }
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, rounded[name], rtol=0, atol=0, msg=name)
    # init_from with a float16 checkpoint, into another point count: float32 weights, output layer fresh
    target = wflw_module(tmp_path).model
    result = warm_start(target, half)
    assert sorted(result.reinitialised) == ["head.fc.bias", "head.fc.weight"]
    assert all(p.dtype == torch.float32 for p in target.parameters())
    for name in result.loaded:
        if name in rounded:
            torch.testing.assert_close(target.state_dict()[name], rounded[name], rtol=0, atol=0, msg=name)


def test_a_missing_zoo_file_is_named_with_what_the_zoo_has(tmp_path: Path) -> None:
    (tmp_path / "tiny-68").mkdir()
    (tmp_path / "tiny-68" / "model.ckpt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"big-98/model_int8.onnx: .*the zoo has: tiny-68.*--model"):
        zoo_model("big-98", zoo=tmp_path)
    with pytest.raises(FileNotFoundError, match="there is no zoo at"):
        zoo_model(zoo=tmp_path / "nowhere")
    assert zoo_model("tiny-68", "model.ckpt", zoo=tmp_path) == tmp_path / "tiny-68" / "model.ckpt"
