"""The committed model zoo (``pretrained/``): complete, under 20 MB, every file the same model as its
checkpoint, the card generated; and ``python -m export.zoo`` making a zoo folder from a training run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

pytest.importorskip("onnxruntime")

from export.command import check_crops
from export.zoo import main as make_zoo
from pfld.inference import ModelSpec, OnnxLandmarkModel, TorchLandmarkModel
from pfld.inference.checkpoint import pose_net_trained, read_checkpoint
from pfld.inference.zoo import DEFAULT_FILE, DEFAULT_MODEL, ZOO, ZOO_FILES, zoo_model, zoo_names
from tests.conftest import compose_train

ZOO_LIMIT_BYTES = 20 * 1024 * 1024
NAMES = ["pfld-0.25x-68", "pfld-1x-68"]


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """16 real normalised validation crops of the embedded sample (112 px, ImageNet mean and std)."""
    datamodule = instantiate(compose_train([], tmp_path_factory.mktemp("zoo")).data)
    datamodule.setup("validate")
    return check_crops(datamodule.val_dataloader().dataset, 16)


def test_the_zoo_has_both_models_complete_and_under_20_mb() -> None:
    assert set(NAMES) <= set(zoo_names())
    assert zoo_model() == ZOO / DEFAULT_MODEL / DEFAULT_FILE
    for name in zoo_names():
        assert sorted(p.name for p in (ZOO / name).iterdir()) == sorted(ZOO_FILES), name
    total = sum(p.stat().st_size for p in ZOO.rglob("*") if p.is_file())
    assert total < ZOO_LIMIT_BYTES, f"the zoo is {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", NAMES)
def test_each_zoo_file_is_its_checkpoints_model(name: str, crops: np.ndarray) -> None:
    folder = ZOO / name
    hparams = read_checkpoint(folder / "model.ckpt")["hyper_parameters"]
    torch_model = TorchLandmarkModel.from_checkpoint(folder / "model.ckpt", with_pose=None)
    assert torch_model.has_pose == pose_net_trained(hparams)
    points, pose = torch_model(crops)
    for file, atol in (("model.onnx", 1e-4), ("model_int8.onnx", 0.03)):
        onnx = OnnxLandmarkModel(folder / file)
        assert onnx.spec == ModelSpec.from_hparams(hparams["data"]).with_pose_output(onnx.has_pose), file
        assert onnx.has_pose == torch_model.has_pose, file
        got, got_pose = onnx(crops)
        assert np.abs(got - points).max() < atol, file
        if pose is not None:
            assert np.abs(np.rad2deg(got_pose - pose)).max() < (0.01 if atol < 1e-3 else 3.0), file
    card = (folder / "MODEL_CARD.md").read_text()
    assert card.startswith(f"# {name}\n") and "## Licence" in card and "research use" in card


def _fake_run(folder: Path, checkpoint: Path, taught: Path | None = None, teachers: list[Path] = ()) -> Path:
    """A run folder as `train.py` leaves one: metrics.json naming its best checkpoint, .hydra/; with
    ``taught`` (its data folder), one of its training folders is MTFL pseudo-labelled by ``teachers``."""
    (folder / "checkpoints").mkdir(parents=True)
    shutil.copyfile(checkpoint, folder / "checkpoints" / "epoch009-nme0.0600.ckpt")
    metrics = {"best_checkpoint": "/elsewhere/checkpoints/epoch009-nme0.0600.ckpt", "val/nme": 0.06}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text(
        "- experiment=shared\n- model=pfld_1x\n- cpu.threads=1\n- hydra.run.dir=x\n"
    )
    (folder / ".hydra" / "config.yaml").write_text(
        "data:\n  train:\n  - folder: ${paths.data_dir}/shared300w/train\n  - folder: ${paths.data_dir}/ytf68/train\n"
    )
    if taught is not None:
        from pfld.io.digest import sha256_file
        from pfld.teacher.pseudo_label import MANIFEST_FILE

        (folder / ".hydra" / "config.yaml").write_text(
            f"paths:\n  data_dir: {taught}\n  teacher_dir: ${{paths.data_dir}}/teacher\n"
            "data:\n  train:\n  - folder: ${paths.data_dir}/shared300w/train\n  - folder: ${paths.teacher_dir}/mtfl5\n"
        )
        (taught / "teacher" / "mtfl5").mkdir(parents=True)
        manifest = {
            "faces": 10000, "kept": 9954, "dropped": 46, "threshold": 0.1, "refine": 0,
            "split": str(taught / "mtfl5" / "train"),
            "checkpoints": [str(t) for t in teachers],
            "checkpoint_sha256": [sha256_file(t) for t in teachers],
            "mapping": None, "keep_scheme": False,
        }  # fmt: skip
        (taught / "teacher" / "mtfl5" / MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


@pytest.mark.slow
def test_a_run_becomes_a_zoo_folder_with_its_card(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    teacher = ZOO / "pfld-1x-68" / "model.ckpt"
    run = _fake_run(tmp_path / "run", teacher, taught=tmp_path / "data", teachers=[teacher])
    overrides = ["latency.runs=3", "latency.warmup=1", "latency.sessions=1", "quantize.calibration_images=32"]
    assert (
        make_zoo(
            [str(run), "--name", "mine-68", "--data", "embedded", "--zoo", str(tmp_path / "zoo"), *overrides]
        )
        == 0
    )
    folder = tmp_path / "zoo" / "mine-68"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ZOO_FILES)
    stored = read_checkpoint(folder / "model.ckpt")["state_dict"]
    assert {v.dtype for k, v in stored.items() if k.startswith("model.") and v.is_floating_point()} == {
        torch.float16
    }
    card = (folder / "MODEL_CARD.md").read_text()
    assert "python train.py experiment=shared model=pfld_1x\n" in card  # threads and folders left out
    assert "`data/shared300w/train`, `data/teacher/mtfl5`" in card and "9,954 of the 10,000 faces" in card
    # how the faces were prepared and pseudo-labelled, and whose terms apply
    assert "bash scripts/prepare_shared.sh\npython -m data mtfl --root ../shared/data/mtfl5\n" in card
    assert "python -m data pseudo-label --model " in card and "--out " in card
    assert "300W" in card and "MTFL" in card and "teachers above" in card
    assert "with the pose output" in card and "| ONNX int8 (arm) | model_int8.onnx |" in card
    assert "0.0600 with the run's float32 weights" in card
    # the export settings that shape the files are in its commands, the latency runs are not
    assert "--zoo" not in card and "--data embedded quantize.calibration_images=32\n" in card
    assert "with_pose=true quantize.calibration_images=32`" in card and "latency." not in card
    assert "wrote " in capsys.readouterr().out


def test_nothing_reaches_the_zoo_when_the_int8_gate_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _fake_run(tmp_path / "run", ZOO / "pfld-1x-68" / "model.ckpt")
    monkeypatch.setattr("export.zoo.run_export", lambda cfg: {"gate": {"passed": False}})
    assert make_zoo([str(run), "--name", "bad-68", "--zoo", str(tmp_path / "zoo")]) == 1
    assert not (tmp_path / "zoo").exists()


def test_a_model_without_a_trained_pose_net_is_costed_without_one(tmp_path: Path) -> None:
    from export.zoo import model_cost
    from pfld.training.module import PFLDModule
    from tests.conftest import OLD_DATA_DESCRIPTION, save_module_checkpoint

    costs = {}
    for auxiliary in (True, False):
        cfg = compose_train([f"model.auxiliary={str(auxiliary).lower()}"], tmp_path)
        module = PFLDModule(cfg.model, cfg.loss, cfg.optimizer, OLD_DATA_DESCRIPTION, cfg.scheduler)
        costs[auxiliary] = model_cost(save_module_checkpoint(module, tmp_path / f"{auxiliary}.ckpt"))
    assert set(costs[False]) == {"parameters", "macs"}  # no pose net: nothing to cost, no error
    assert (
        costs[True]["parameters"] == costs[False]["parameters"]
        and costs[True]["macs"] == costs[False]["macs"]
    )
    assert (
        costs[True]["pose_macs"] > costs[True]["macs"]
        and costs[True]["pose_parameters"] > costs[True]["parameters"]
    )


def test_a_card_pins_the_teachers_of_pseudo_labelled_faces_to_their_commit(tmp_path: Path) -> None:
    import subprocess

    from export.provenance import ROOT, teacher_lines, train_folders
    from pfld.cli.data import build_parser

    zoo_file = ZOO / "pfld-0.25x-68" / "model.ckpt"
    log = ["git", "log", "-1", "--format=%h", "--", str(zoo_file.relative_to(ROOT))]
    commit = subprocess.run(log, cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "--", str(zoo_file)], cwd=ROOT, check=False).returncode
    if not commit or dirty:
        pytest.skip("the zoo's 0.25X checkpoint is not a committed file here (no git, or changed)")
    elsewhere = tmp_path / "elsewhere.ckpt"
    elsewhere.write_bytes(b"a teacher in no commit")
    run = _fake_run(tmp_path / "run", zoo_file, taught=tmp_path / "data", teachers=[zoo_file, elsewhere])
    data = tmp_path / "data"
    folders = train_folders(run)
    assert [(f.name, f.source, f.manifest is not None) for f in folders] == [
        ("data/shared300w/train", "shared300w", False),
        ("data/teacher/mtfl5", "mtfl5", True),
    ]
    bullet, commands = teacher_lines(folders[1])
    assert "9,954 of the 10,000 faces" in bullet and "46 dropped" in bullet
    assert f"`pretrained/pfld-0.25x-68/model.ckpt` of commit {commit}" in bullet
    assert "in no commit" in bullet  # a teacher git does not hold is named, not pinned
    assert (
        commands[0] == f"git show {commit}:pretrained/pfld-0.25x-68/model.ckpt > teacher-pfld-0.25x-68.ckpt"
    )
    # the remade command is one the CLI accepts, with the teachers restored from git
    args = build_parser().parse_args(commands[-1].split()[3:])
    assert args.model == [Path("teacher-pfld-0.25x-68.ckpt"), elsewhere]
    assert (args.split, args.out, args.threshold, args.refine) == (
        data / "mtfl5" / "train",
        data / "teacher" / "mtfl5",
        0.1,
        0,
    )


def test_the_remade_pseudo_label_command_keeps_a_threshold_other_than_the_default(tmp_path: Path) -> None:
    import shlex

    from pfld.cli.data import build_parser
    from pfld.teacher import DROP_THRESHOLD
    from pfld.teacher.pseudo_label import pseudo_label_command

    outside = tmp_path.parent / "elsewhere.ckpt"  # not under the root: shown as it is
    manifest = {
        "checkpoints": [str(tmp_path / "t.ckpt"), str(outside)],
        "split": str(tmp_path / "mtfl5 [copy]"),
    }
    for threshold, written in ((DROP_THRESHOLD, False), (0.25, True)):
        command = pseudo_label_command({**manifest, "threshold": threshold}, tmp_path / "out", root=tmp_path)
        assert ("--threshold" in command) == written
        args = build_parser().parse_args(shlex.split(command)[3:])  # a path with a space and a glob pattern
        assert args.model == [Path("t.ckpt"), outside] and args.split == Path("mtfl5 [copy]")
        assert (args.out, args.threshold) == (Path("out"), threshold)


@pytest.mark.slow
def test_a_final_fit_is_exported_from_its_last_checkpoint_with_the_run_before_it_as_its_accuracy(
    tmp_path: Path,
) -> None:
    before = _fake_run(tmp_path / "before", ZOO / "pfld-0.25x-68" / "model.ckpt")
    (before / "metrics.json").write_text(json.dumps({"val/nme": 0.0579, "val/nme_profile": 0.11}))
    (before / ".hydra" / "config.yaml").write_text("seed: 1\n")
    seed2 = _fake_run(tmp_path / "before2", ZOO / "pfld-0.25x-68" / "model.ckpt")
    (seed2 / "metrics.json").write_text(json.dumps({"val/nme": 0.0583, "val/nme_profile": 0.12}))
    (seed2 / ".hydra" / "config.yaml").write_text("seed: 2\n")
    (seed2 / ".hydra" / "overrides.yaml").write_text("- experiment=shared\n- model=pfld_1x\n- seed=2\n")
    fit = _fake_run(tmp_path / "fit", ZOO / "pfld-0.25x-68" / "model.ckpt")
    (fit / ".hydra" / "overrides.yaml").write_text("- experiment=final_fit\n- trainer.max_epochs=120\n")
    zoo = tmp_path / "zoo"
    arguments = [str(fit), "--name", "fit-68", "--data", "embedded", "--zoo", str(zoo), "--validated-by"]
    overrides = ["latency.runs=2", "latency.warmup=1", "latency.sessions=1", "quantize.calibration_images=16"]
    assert make_zoo([*arguments, str(before), *overrides]) == 1  # no last.ckpt: refused, nothing written
    assert not zoo.exists()
    shutil.copyfile(ZOO / "pfld-1x-68" / "model.ckpt", fit / "checkpoints" / "last.ckpt")
    assert make_zoo([*arguments, str(before), "--validated-by", str(seed2), *overrides]) == 0
    stored = read_checkpoint(zoo / "fit-68" / "model.ckpt")
    assert stored["hyper_parameters"]["model"]["backbone"]["width"] == 1.0  # last.ckpt's model, not the best
    card = (zoo / "fit-68" / "MODEL_CARD.md").read_text()
    assert "python train.py experiment=shared model=pfld_1x   # the run before the fit" in card
    assert "python train.py experiment=final_fit trainer.max_epochs=120\n" in card
    assert "--validated-by <the run before the fit>" in card and "the whole schedule" in card
    assert "python train.py experiment=shared model=pfld_1x seed=2   # the run before the fit" in card
    assert (
        "| run | NME | profile |\n|---|---:|---:|\n| before the fit, seed 1 | 0.0579 | 0.1100 |\n"
        "| before the fit, seed 2 | 0.0583 | 0.1200 |\n| mean ± sd, 2 runs | 0.0581 ± 0.0003 | 0.1150 ± 0.0071 |"
    ) in card
    assert "on faces it trained on" in card and "validation run itself" not in card
