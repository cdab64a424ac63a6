"""Stop signals save the run and exit non-zero; checkpoints are whole or absent; resumes find the newest
usable checkpoint."""

from __future__ import annotations

import errno
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pfld.training.preemption import (
    atomic_torch_save,
    checkpoint_loads,
    exit_status,
    resolve_ckpt_path,
    resumable_checkpoint,
)
from tests.conftest import ROOT

#: A default run on the embedded sample, long enough to be stopped in the middle of an epoch.
RUN = [
    "logger=csv",
    "data.num_workers=0",
    "data.batch_size=16",
    "trainer.max_epochs=30",
    "validate_best=false",
]


def _fake_checkpoint(step: int) -> dict:
    return {"state_dict": {"w": torch.full((4,), float(step))}, "loops": {}, "global_step": step}


def test_exit_statuses_follow_the_shells_convention():
    assert [exit_status(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)] == [143, 130, 138]


def test_an_atomic_save_that_fails_leaves_the_previous_checkpoint_and_no_temporary_file(
    tmp_path, monkeypatch
):
    path = tmp_path / "checkpoints" / "last.ckpt"
    atomic_torch_save(_fake_checkpoint(1), path)

    def disk_full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(
        OSError, match=r"last.ckpt: could not write it \(No space left on device\); the previous"
    ):
        atomic_torch_save(_fake_checkpoint(2), path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["global_step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save({"bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=False)["global_step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def _write_forever(path: str) -> None:
    """Child process: write ever newer, large checkpoints to ``path`` until killed."""
    step = 0
    while True:
        step += 1
        atomic_torch_save(
            {"state_dict": {"w": torch.full((2_000_000,), float(step))}, "loops": {}, "step": step},
            Path(path),
        )


@pytest.mark.slow
def test_killing_a_writer_at_random_moments_never_leaves_a_partial_checkpoint(tmp_path):
    """SIGKILL a process that does nothing but write 8 MB checkpoints, 10 times at random moments (most
    of them inside a write): the file is always a complete checkpoint, old or new."""
    path = tmp_path / "last.ckpt"
    context = multiprocessing.get_context("spawn")
    rng = torch.Generator().manual_seed(0)
    steps = []
    for _ in range(10):
        child = context.Process(target=_write_forever, args=(str(path),))
        child.start()
        while not path.exists():
            time.sleep(0.01)
        time.sleep(0.05 + 0.3 * torch.rand(1, generator=rng).item())
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        checkpoint = torch.load(path, weights_only=False)  # never truncated
        assert checkpoint["state_dict"]["w"].unique().tolist() == [float(checkpoint["step"])]
        steps.append(checkpoint["step"])
        for leftover in tmp_path.glob(".last.*.tmp.ckpt"):
            leftover.unlink()  # a killed writer's temporary file: never mistaken for a checkpoint
    assert all(s >= 1 for s in steps)


def test_resuming_from_last_or_auto_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, capsys):
    assert resolve_ckpt_path("auto", tmp_path) is None
    with pytest.raises(ValueError, match="ckpt_path=last: no usable checkpoint in"):
        resolve_ckpt_path("last", tmp_path)
    folder = tmp_path / "checkpoints"
    atomic_torch_save(_fake_checkpoint(5), folder / "epoch004-nme0.1000.ckpt")
    atomic_torch_save(_fake_checkpoint(7), folder / "last.ckpt")
    atomic_torch_save(_fake_checkpoint(9), folder / ".last.123.tmp.ckpt")  # a write killed before its rename
    assert resolve_ckpt_path("last", tmp_path) == str(folder / "last.ckpt")
    data = (folder / "last.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])  # truncated, as by a crash of another writer
    assert not checkpoint_loads(folder / "last.ckpt")
    assert resumable_checkpoint(tmp_path) == folder / "epoch004-nme0.1000.ckpt"
    assert "last.ckpt is incomplete or corrupt" in capsys.readouterr().err
    assert resolve_ckpt_path(str(tmp_path), "elsewhere") == str(folder / "epoch004-nme0.1000.ckpt")
    assert resolve_ckpt_path("some/file.ckpt", tmp_path) == "some/file.ckpt"  # checked later, by name


def _start(run_dir: Path, extra: list[str] = ()) -> subprocess.Popen:
    command = [sys.executable, "train.py", *RUN, f"hydra.run.dir={run_dir}", *extra]
    env = dict(os.environ, WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1")
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_training(run_dir: Path, process: subprocess.Popen) -> None:
    """Until the first epoch's checkpoint exists (so the model, data and loops are all running)."""
    deadline = time.time() + 240
    while not list((run_dir / "checkpoints").glob("*.ckpt")):
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, "training did not start"
        time.sleep(0.2)
    time.sleep(1.0)  # into the second epoch


@pytest.mark.slow
def test_sigterm_saves_mid_epoch_prints_the_resume_command_exits_143_and_the_command_resumes(tmp_path):
    first = tmp_path / "first"
    process = _start(first)
    _wait_for_training(first, process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 143, output
    saved = torch.load(first / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] % 30 != 0, "saved in the middle of an epoch (30 batches each)"
    command = re.search(r"resume with:\n\s+(.+)", output)[1]
    assert (
        command.startswith("python train.py")
        and f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}" in command
    )

    arguments = [a for a in shlex.split(command)[2:] if not a.startswith("trainer.max_epochs=")]
    resumed = subprocess.run(
        [
            sys.executable,
            "train.py",
            *arguments,
            "trainer.max_epochs=3",
            f"hydra.run.dir={tmp_path / 'resumed'}",
        ],
        check=False,
        cwd=ROOT,
        env=dict(os.environ, WANDB_MODE="disabled"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["epoch"] == 2 and final["global_step"] == 90, (
        "continued from the saved step to epoch 3's end"
    )


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGUSR1, 138)])
def test_ctrl_c_and_sigusr1_also_save_and_exit_with_their_status(tmp_path, signum, status):
    process = _start(tmp_path)
    _wait_for_training(tmp_path, process)
    process.send_signal(signum)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == status, output
    assert f"stopped by {signal.Signals(signum).name}" in output and "resume with:" in output
    assert checkpoint_loads(tmp_path / "checkpoints" / "last.ckpt")


#: A short deterministic run: one thread, no workers, 30 batches an epoch, checkpoints every epoch.
EXACT = ["trainer.max_epochs=3", "cpu.threads=1"]


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    process = _start(run_dir, EXACT)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    return _final_weights(run_dir)


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_and_resumed_ends_with_bitwise_the_same_weights(tmp_path, uninterrupted):
    process = _start(tmp_path, EXACT)
    _wait_for_training(tmp_path, process)
    process.send_signal(signal.SIGTERM)
    assert process.communicate(timeout=120)[0] and process.returncode == 143
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] % 30 != 0
    resumed = _start(tmp_path, [*EXACT, "ckpt_path=last"])
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    _assert_same_weights(_final_weights(tmp_path), uninterrupted)


def _writing(run_dir: Path) -> bool:
    """Whether a checkpoint is being written (its temporary file exists, `pfld.io.atomic.staged`)."""
    return any((run_dir / "checkpoints").glob(".*.tmp.ckpt"))


@pytest.mark.slow
def test_a_kill_storm_of_ten_sigkills_some_inside_checkpoint_writes_ends_as_the_uninterrupted_run(
    tmp_path, uninterrupted
):
    """SIGKILL the same run 10 times at random moments, each write of a checkpoint slowed to 1 s so
    that several kills land inside one, and resume it every time with ckpt_path=auto: no kill loses a
    finished epoch or leaves a checkpoint that does not load, and the run ends with bitwise the weights
    of the uninterrupted one."""
    slow = "trainer.plugins=[{_target_:tests.slow_io.SlowAtomicCheckpointIO}]"
    overrides = [*EXACT, slow, "ckpt_path=auto"]
    rng = torch.Generator().manual_seed(3)
    inside_writes = 0
    for kill in range(10):
        process = _start(tmp_path, overrides)
        if kill % 2:  # at a random moment
            time.sleep(4.0 + 12.0 * torch.rand(1, generator=rng).item())
        else:  # as soon as a checkpoint is half-written (written, not yet renamed: the writer waits 1 s)
            deadline = time.time() + 120
            while not _writing(tmp_path) and process.poll() is None and time.time() < deadline:
                time.sleep(0.05)
        inside_writes += _writing(tmp_path)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        for path in (tmp_path / "checkpoints").glob("*.ckpt"):
            if not path.name.startswith("."):  # a killed write's temporary: never read
                assert checkpoint_loads(path), f"{path.name} does not load after a kill"
    process = _start(tmp_path, overrides)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    assert inside_writes >= 1, (
        "no kill landed inside a checkpoint write; the storm tested less than it claims"
    )
    _assert_same_weights(_final_weights(tmp_path), uninterrupted)


def test_a_full_disk_while_writing_a_prepared_split_keeps_the_previous_one(tmp_path, monkeypatch):
    """The split's files are written through pfld.io.atomic: a full disk names the file and leaves the
    split as it was, loadable."""
    import numpy as np

    from pfld.data.store import load_faces, save_faces
    from tests.pfld.data.test_mixed_schemes import five_point_faces, load_mapping

    faces = five_point_faces(
        np.random.default_rng(0).uniform(40, 120, (3, 68, 2)), load_mapping("five_point", "ibug68")
    )
    save_faces(faces, tmp_path / "split")
    real_save = np.savez

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError, match=r"annotations.npz: could not write it \(No space left on device\)"):
        save_faces(faces.subset([0]), tmp_path / "split")
    monkeypatch.setattr(np, "savez", real_save)
    assert len(load_faces(tmp_path / "split")) == 3
    assert not [p for p in (tmp_path / "split").iterdir() if p.name.startswith(".")]


def test_an_interrupted_onnx_export_leaves_no_file_that_looks_finished(tmp_path, monkeypatch):
    """The ONNX file is built beside its name and renamed only once described and checked: a failure
    (or a kill) at the parity check leaves nothing at the model's path."""
    pytest.importorskip("onnxruntime")
    from export import onnx_export
    from tests.export.test_export import tiny_metadata, tiny_model

    def broken_check(*args, **kwargs):
        raise KeyboardInterrupt  # as a Ctrl+C in the middle of the export

    monkeypatch.setattr(onnx_export, "max_abs_difference", broken_check)
    with pytest.raises(KeyboardInterrupt):
        onnx_export.export_onnx(tiny_model(), tmp_path / "model.onnx", tiny_metadata())
    assert list(tmp_path.iterdir()) == []


def _kill_at_random(command: list[str], moments: list[float]) -> None:
    """Start ``command`` once per moment and SIGKILL it that many seconds later (if still running)."""
    env = dict(os.environ, WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1")
    for moment in moments:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)


@pytest.mark.slow
def test_killing_python_m_data_never_leaves_a_split_that_looks_prepared_and_is_not(tmp_path):
    """SIGKILL the preparation of the embedded sample 8 times at random moments: after each kill every
    split that looks prepared loads whole; the manifest is valid JSON; a rerun finishes the job with the
    same faces as an uninterrupted preparation."""
    import json

    from pfld.data.store import is_prepared, load_faces

    csv = ROOT / "data" / "embedded"
    args = ["-m", "data", "csv", "--split", f"train={csv / 'train.csv'}", "--split", f"val={csv / 'val.csv'}"]
    out = tmp_path / "killed"
    command = [sys.executable, *args, "--out", str(out), "--shard-size", "64"]
    rng = torch.Generator().manual_seed(1)
    for _ in range(8):
        _kill_at_random(command, [0.8 + 2.5 * torch.rand(1, generator=rng).item()])
        for split in ("train", "val"):
            if is_prepared(out / split):
                faces = load_faces(out / split)
                assert len(faces) == {"train": 480, "val": 160}[split] and faces.images.shape[0] == len(faces)
        if (out / "manifest.json").is_file():
            json.loads((out / "manifest.json").read_text())
    subprocess.run([sys.executable, *args, "--out", str(out), "--shard-size", "64"], cwd=ROOT, check=True)
    subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "clean"), "--shard-size", "64"], cwd=ROOT, check=True
    )
    for split in ("train", "val"):
        killed, clean = load_faces(out / split), load_faces(tmp_path / "clean" / split)
        assert (killed.landmarks == clean.landmarks)[~np.isnan(clean.landmarks)].all()
        assert np.array_equal(np.asarray(killed.images), np.asarray(clean.images))


@pytest.mark.slow
def test_killing_python_m_export_never_leaves_an_onnx_file_that_is_not_finished(tmp_path, tiny_checkpoint):
    """SIGKILL `python -m export` 4 times, twice at random moments and twice while an ONNX file is being
    built: every ONNX file it left under a model's name loads in onnxruntime with its metadata (a killed
    build leaves only its hidden temporary); a rerun writes the whole report."""
    ort = pytest.importorskip("onnxruntime")
    from export import read_metadata
    from tests.export.test_export_command import FAST

    out = tmp_path / "export"
    command = [sys.executable, "-m", "export", f"ckpt={tiny_checkpoint}", f"out={out}", *FAST]
    env = dict(os.environ, WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1")
    rng = torch.Generator().manual_seed(2)

    def building() -> bool:
        return any(out.rglob(".*.tmp.onnx"))

    def check_models() -> int:
        models = [m for m in out.rglob("*.onnx") if not m.name.startswith(".")]
        for model in models:
            ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
            assert read_metadata(model)["pfld.num_landmarks"] == 68
        return len(models)

    inside_builds = 0
    for kill in range(4):
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if kill % 2:
            time.sleep(3.0 + 10.0 * torch.rand(1, generator=rng).item())
        else:
            deadline = time.time() + 120
            while not building() and process.poll() is None and time.time() < deadline:
                time.sleep(0.02)
        inside_builds += building()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        check_models()
    assert inside_builds >= 1, "no kill landed while an ONNX file was being built"
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    assert list(out.rglob("report.json")) and check_models() == 2  # model.onnx and model_int8.onnx


def test_a_truncated_checkpoint_given_to_ckpt_path_or_init_from_is_named_in_a_clear_error(tmp_path):
    from omegaconf import OmegaConf

    from pfld.training.config_checks import checkpoint_problems
    from tests.conftest import save_module_checkpoint, wflw_module

    path = save_module_checkpoint(wflw_module(tmp_path), tmp_path / "whole.ckpt")
    assert checkpoint_problems(OmegaConf.create({"init_from": str(path)})) == []  # the whole file reads
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    for key in ("ckpt_path", "init_from"):
        problems = checkpoint_problems(OmegaConf.create({key: str(path)}))
        assert len(problems) == 1 and problems[0].startswith(f"{key}={path}: cannot read the checkpoint")
