"""`evaluate.py` / `pfld.evaluation.checkpoint.evaluate` on a checkpoint trained for two steps."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import open_dict

from pfld.evaluation.checkpoint import evaluate
from tests.conftest import ROOT, compose_config


def compose_evaluate(overrides: list[str], output_dir: Path):
    """The real `conf/evaluate.yaml`, composed as `evaluate.py` would, with outputs under ``output_dir``."""
    return compose_config("evaluate", overrides, output_dir)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


def validation_metrics(checkpoint: Path, tmp_path: Path) -> dict[str, float]:
    """The checkpoint's training-time validation metrics (`PFLDModule` under Lightning's validate) on the
    sample's 160 validation faces: what `evaluate`, another code path, must reproduce."""
    import lightning as L
    from hydra.utils import instantiate

    from pfld.training.module import PFLDModule
    from tests.conftest import compose_train

    module = PFLDModule.load_from_checkpoint(checkpoint, map_location="cpu")
    datamodule = instantiate(compose_train(["data.num_workers=0"], tmp_path).data)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    return trainer.validate(module, datamodule=datamodule, verbose=False)[0]


@pytest.mark.slow
def test_evaluate_writes_metrics_table_and_pictures(checkpoint, tmp_path):
    summary = evaluate(compose_evaluate([f"ckpt={checkpoint}", "data.num_workers=0"], tmp_path))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["faces"] == summary["faces"] == 160 and saved["unscored"] == 0
    validated = validation_metrics(checkpoint, tmp_path / "validate")
    for key in ("nme", "failure_rate", "auc"):
        assert saved[key] == pytest.approx(validated[f"val/{key}"], rel=1e-5, abs=1e-6), key
    assert saved["by_group"]["all"]["faces"] == 160 and saved["checkpoint"] == str(checkpoint)
    from pfld.io.digest import sha256_file

    assert saved["checkpoint_sha256"] == sha256_file(checkpoint)  # which version of the file was scored
    assert set(saved["pose_mae_deg"]) == {
        "yaw",
        "pitch",
        "roll",
        "faces",
    }  # the default model has the pose net
    table = (tmp_path / "metrics.md").read_text()
    for row in ("| NME |", "| FR@0.1 |", "| AUC@0.1 |", "| yaw MAE", "| all | 160 |", "| frontal |"):
        assert row in table
    for picture in ("val_ced.png", "val_predictions.png"):
        assert (tmp_path / picture).stat().st_size > 1000


@pytest.mark.slow
def test_evaluate_reports_each_validation_source(checkpoint, tmp_path):
    cfg = compose_evaluate(
        [f"ckpt={checkpoint}", "data.num_workers=0", "out=" + str(tmp_path / "x")], tmp_path
    )
    with open_dict(cfg):  # the sample's validation faces twice, as two named sets
        cfg.data.val = [cfg.data.val[0], cfg.data.val[0]]
        cfg.data.val_names = ["common", "challenging"]
    summary = evaluate(cfg)
    assert (
        summary["by_group"]["subset:common"]["faces"]
        == summary["by_group"]["subset:challenging"]["faces"]
        == 160
    )
    assert "| subset:challenging | 160 |" in (tmp_path / "x" / "metrics.md").read_text()


@pytest.mark.slow
def test_evaluate_refuses_data_with_other_points(checkpoint, tmp_path):
    # Kaggle's 15 points: no mapping relates them to 68; the refusal comes before any data is read
    with pytest.raises(ValueError, match="predicts 68 'ibug68' points .* 'kaggle15' has 15.*shipped"):
        evaluate(compose_evaluate([f"ckpt={checkpoint}", "data=kaggle"], tmp_path))
    with pytest.raises(FileNotFoundError, match="none.ckpt: model not found"):
        evaluate(compose_evaluate([f"ckpt={tmp_path / 'none.ckpt'}"], tmp_path))


@pytest.mark.slow
def test_an_exported_onnx_model_is_scored_like_its_checkpoint(checkpoint, tmp_path):
    from export.onnx_export import export_onnx
    from pfld.inference import load_checkpoint

    model, spec = load_checkpoint(checkpoint)
    onnx = export_onnx(model, tmp_path / "model.onnx", spec.to_metadata()).path
    common = ["data.num_workers=0"]
    torch_scores = evaluate(compose_evaluate([f"ckpt={checkpoint}", *common], tmp_path / "ckpt"))
    onnx_scores = evaluate(compose_evaluate([f"ckpt={onnx}", *common], tmp_path / "onnx"))
    assert onnx_scores["faces"] == torch_scores["faces"] == 160 and onnx_scores["checkpoint"] == str(onnx)
    assert onnx_scores["nme"] == pytest.approx(torch_scores["nme"], abs=1e-5)
    assert onnx_scores["by_group"].keys() == torch_scores["by_group"].keys()


def test_evaluate_scores_with_the_data_normalization_when_it_is_not_the_checkpoints(checkpoint, tmp_path):
    """``data.normalization=box`` on faces of the checkpoint's own scheme: the NME over each face's box, not
    silently the inter-ocular one the checkpoint was validated with."""
    from hydra.utils import instantiate

    from pfld.evaluation.report import scored
    from pfld.inference.models import load_landmark_model
    from pfld.metrics import nme

    common = [f"ckpt={checkpoint}", "data.num_workers=0"]
    ocular = evaluate(compose_evaluate(common, tmp_path / "ocular"))
    cfg = compose_evaluate([*common, "data.normalization=box"], tmp_path / "box")
    box = evaluate(cfg)
    assert (ocular["normalization"], box["normalization"]) == ("inter_ocular", "box")
    assert json.loads((tmp_path / "box" / "metrics.json").read_text())["normalization"] == "box"
    datamodule = instantiate(cfg.data)
    datamodule.setup("validate")
    model = load_landmark_model(str(checkpoint), with_pose=None)
    out = scored(model, datamodule.val_dataloader(), (36, 45))[0]
    expected = float(nme(out["predictions"], out["landmarks"], "box", out["visible"]).mean())
    assert box["nme"] == pytest.approx(expected, rel=1e-5)
    assert ocular["nme"] == pytest.approx(
        float(nme(out["predictions"], out["landmarks"], (36, 45)).mean()), rel=1e-5
    )
    assert box["nme"] < 0.8 * ocular["nme"]  # a face's box is wider than its eye corners are apart


@pytest.mark.slow
def test_a_68_point_model_is_scored_on_wflw_faces_at_the_points_the_mapping_relates(checkpoint, tmp_path):
    """WFLW's 98 points hold the 68 one to one (wflw98 -> ibug68); the other 30 are not scored, and the
    NME is over WFLW's own outer eye corners (60, 72)."""
    from hydra.utils import instantiate

    from pfld.cli.data import main as prepare_main
    from pfld.data.schemes.mapping import load_mapping
    from pfld.evaluation import predict
    from pfld.inference import TorchLandmarkModel, load_checkpoint
    from tests.conftest import FIXTURES

    prepare_main(["wflw", "--root", str(FIXTURES / "wflw"), "--out", str(tmp_path / "data" / "wflw")])
    cfg = compose_evaluate(
        [f"ckpt={checkpoint}", "data=wflw", f"paths.data_dir={tmp_path / 'data'}", "data.num_workers=0"],
        tmp_path / "out",
    )
    summary = evaluate(cfg)
    assert summary["scheme"] == "wflw98" and summary["mapping"].endswith("wflw98-ibug68.yaml")
    assert summary["unscored"] == 0 and (tmp_path / "out" / "val_predictions.png").stat().st_size > 1000

    datamodule = instantiate(cfg.data)  # the same crops, the model's own 68 points, mapped by hand
    datamodule.setup("validate")
    out = predict(TorchLandmarkModel(*load_checkpoint(checkpoint)), datamodule.val_dataloader())
    direct = load_mapping("wflw98", "ibug68").direct  # (98,) the 68-point index, -1 where none
    wflw = np.flatnonzero(direct >= 0)
    assert len(wflw) == 68
    truth, guessed = out["landmarks"].numpy()[:, wflw], out["predictions"].numpy()[:, direct[wflw]]
    corners = out["landmarks"].numpy()[:, [60, 72]]
    expected = np.linalg.norm(truth - guessed, axis=-1).mean(-1) / np.linalg.norm(
        corners[:, 0] - corners[:, 1], axis=-1
    )
    assert summary["nme"] == pytest.approx(expected.mean(), rel=1e-5)


#: Each data set's scheme and point count.
SCHEMES = {
    "embedded": ("ibug68", 68),
    "300w": ("ibug68", 68),
    "wflw": ("wflw98", 98),
    "shared": ("ibug68", 68),
    "mtfl5": ("five_point", 5),
}


def test_evaluate_config_composes_with_every_data_set(tmp_path):
    for data, scheme in SCHEMES.items():
        cfg = compose_evaluate(["ckpt=x.ckpt", f"data={data}"], tmp_path)
        assert cfg.out == str(tmp_path)
        assert (cfg.data.scheme.name_or_path, cfg.data.num_points) == scheme


@pytest.mark.slow
def test_evaluate_py_runs(checkpoint, tmp_path):
    command = [sys.executable, str(ROOT / "evaluate.py"), f"ckpt={checkpoint}", f"out={tmp_path}"]
    command += [f"paths.log_dir={tmp_path / 'logs'}", "data.num_workers=0"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert "| NME |" in result.stdout and saved["faces"] == 160 and saved["checkpoint"] == str(checkpoint)
