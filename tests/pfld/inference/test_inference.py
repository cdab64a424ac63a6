import pytest
import torch

from pfld.inference import ModelSpec, load_checkpoint
from pfld.training.module import PFLDModule
from tests.conftest import OLD_DATA_DESCRIPTION, compose_train

DATA = OLD_DATA_DESCRIPTION


def _checkpoint(tmp_path, module: PFLDModule):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def test_inference_model_from_checkpoint_drops_the_auxiliary_net(tmp_path):
    cfg = compose_train([], tmp_path)
    module = PFLDModule(cfg.model, cfg.loss, cfg.optimizer, DATA, cfg.scheduler)
    with torch.no_grad():
        for parameter in module.parameters():  # make the weights differ from a fresh initialisation
            parameter.add_(0.01 * torch.randn_like(parameter))
    model, spec = load_checkpoint(_checkpoint(tmp_path, module))
    assert model.auxiliary is None and not model.training
    assert not any(key.startswith("auxiliary.") for key in model.state_dict())
    assert spec == ModelSpec.from_hparams(DATA) and spec.normalization_mode == "inter_ocular"  # old: no mode
    hparams = spec.to_hparams() | {"coordinates": DATA["coordinates"]}  # the line's wording has changed since
    assert hparams == DATA | {"normalization_mode": "inter_ocular"}
    images = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(model(images), module.model.eval()(images))


def test_foreign_checkpoints_are_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a pfld training checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_module_refuses_a_model_for_other_data(tmp_path):
    cfg = compose_train(["data.num_points=98"], tmp_path)
    with pytest.raises(ValueError, match="model has 98 points but the data has 68"):
        PFLDModule(cfg.model, cfg.loss, cfg.optimizer, DATA, cfg.scheduler)
