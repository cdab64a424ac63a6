"""What a final fit's card quotes as its accuracy: the run before it, from its folder or an evaluate.py report."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from export.provenance import ROOT, train_command
from export.validation import BEFORE, read_validation, validation_lines
from pfld.inference.zoo import ZOO
from pfld.io.digest import sha256_file

REPORT = {
    "nme": 0.0579,
    "failure_rate": 0.0534,
    "auc": 0.4332,
    "faces": 337,
    "by_group": {"profile": {"nme": 0.11, "faces": 10}},
    "pose_mae_deg": {"yaw": 2.0, "pitch": 3.0, "roll": 1.0, "faces": 337},
}


def _report(folder: Path, checkpoint: Path, **extra: object) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(REPORT | {"checkpoint": str(checkpoint)} | extra))
    return folder


def test_a_run_folder_gives_its_figures_seed_and_train_command(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"val/nme": 0.06, "val/nme_profile": 0.1}))
    (run / ".hydra" / "config.yaml").write_text("seed: 3\n")
    (run / ".hydra" / "overrides.yaml").write_text(
        "- experiment=shared\n- cpu.threads=1\n- paths.data_dir=/d\n- ckpt_path=x/last.ckpt\n"
    )
    validation = read_validation(run, "shared")
    assert validation.commands == ["python train.py experiment=shared" + BEFORE]
    assert validation.label == "before the fit, seed 3" and validation.faces is None


def test_the_train_command_quotes_what_a_shell_would_read_otherwise(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        "- experiment=final_fit\n- data.train_repeats=[4,4,1,1]\n- data.oversample={profile:4}\n- seed=1\n"
    )
    command = train_command(run)
    assert command == (
        "python train.py experiment=final_fit 'data.train_repeats=[4,4,1,1]' 'data.oversample={profile:4}' seed=1"
    )
    assert shlex.split(command)[2:] == [
        "experiment=final_fit",
        "data.train_repeats=[4,4,1,1]",
        "data.oversample={profile:4}",
        "seed=1",
    ]


def test_an_evaluate_report_beside_its_run_gives_the_runs_command_and_the_scoring_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- experiment=shared\n- seed=2\n")
    report = _report(tmp_path / "eval", run / "checkpoints" / "last.ckpt")
    validation = read_validation(report, "shared")
    assert validation.commands[0] == "python train.py experiment=shared seed=2" + BEFORE
    assert validation.commands[1].startswith("python evaluate.py ckpt=") and validation.commands[1].endswith(
        "run/checkpoints/last.ckpt data=shared"
    )
    assert validation.faces == 337
    lines = "\n".join(validation_lines(validation))
    # the report's names become the training log's: NME, FR in %, AUC, the profile class, mean pose MAE
    assert "| before the fit | 0.0579 | 5.3 | 0.433 | 0.1100 | 2.00 |" in lines


def test_several_seeds_of_the_run_before_the_fit_are_quoted_each_then_their_mean_and_spread(
    tmp_path: Path,
) -> None:
    runs = []
    for seed, (nme, profile) in enumerate([(0.0457, 0.084), (0.0463, 0.0863)], start=1):
        run = tmp_path / f"seed{seed}"
        (run / ".hydra").mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"val/nme": nme, "val/nme_profile": profile}))
        (run / ".hydra" / "config.yaml").write_text(f"seed: {seed}\n")
        (run / ".hydra" / "overrides.yaml").write_text(f"- experiment=zoo\n- seed={seed}\n")
        runs.append(read_validation(run, "shared"))
    lines = "\n".join(validation_lines(runs))
    assert "in 2 runs (seeds; their commands are above)" in lines
    assert (
        "| run | NME | profile |\n|---|---:|---:|\n"
        "| before the fit, seed 1 | 0.0457 | 0.0840 |\n"
        "| before the fit, seed 2 | 0.0463 | 0.0863 |\n"
        "| mean ± sd, 2 runs | 0.0460 ± 0.0004 | 0.0852 ± 0.0016 |\n"
    ) in lines
    # one run: no mean row, the wording of a single run
    single = "\n".join(validation_lines(runs[0]))
    assert "mean ± sd" not in single and "(its commands are above)" in single


def test_an_evaluate_report_of_a_committed_checkpoint_is_pinned_to_its_commit(tmp_path: Path) -> None:
    zoo_file = ZOO / "pfld-0.25x-68" / "model.ckpt"
    relative = zoo_file.relative_to(ROOT).as_posix()
    log = ["git", "log", "-1", "--format=%h", "--", relative]
    commit = subprocess.run(log, cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "--", relative], cwd=ROOT, check=False).returncode
    if not commit or dirty:
        pytest.skip("the zoo's 0.25X checkpoint is not a committed file here (no git, or changed)")
    report = _report(tmp_path / "eval", Path(relative), checkpoint_sha256=sha256_file(zoo_file))
    trained, restore, scored = read_validation(report, "shared").commands
    assert trained.startswith("python train.py ") and trained.endswith(BEFORE + " (its card in that commit)")
    assert restore == f"git show {commit}:{relative} > before-the-fit.ckpt   # that run's model"
    assert scored == "python evaluate.py ckpt=before-the-fit.ckpt data=shared"


def test_a_report_that_cannot_tell_how_its_model_was_trained_is_refused(tmp_path: Path) -> None:
    stray = tmp_path / "stray.ckpt"
    stray.write_bytes(b"in no commit, no run beside it")
    report = _report(tmp_path / "eval", stray, checkpoint_sha256=sha256_file(stray))
    with pytest.raises(ValueError, match="cannot be told"):
        read_validation(report, "shared")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text(json.dumps({"loss": 1.0}))
    with pytest.raises(ValueError, match="neither a training run"):
        read_validation(tmp_path / "other", "shared")
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        read_validation(tmp_path / "missing", "shared")
