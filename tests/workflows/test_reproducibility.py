"""The same seed gives the same run on CPU; a run killed mid-epoch and resumed from its last.ckpt
continues where it stopped (epoch, step, optimiser and schedule) and ends where an uninterrupted run does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
import torch

from pfld.training.loop import train
from tests.conftest import ROOT, TINY_TRAINING, compose_train

pytestmark = pytest.mark.slow  # every test trains


def test_the_same_seed_gives_the_same_first_epoch(tmp_path):
    """Two runs with seed 42 log the same losses and metrics (to 1e-6); seed 43 does not (the check
    is not vacuous). One data worker, as in the default config: its augmentation is seeded too."""
    runs = [
        train(compose_train([*TINY_TRAINING, "data.num_workers=1", f"seed={seed}"], tmp_path / f"run{n}"))
        for n, seed in enumerate((42, 42, 43))
    ]
    first, again, other = ({k: v for k, v in run.items() if k.startswith(("train/", "val/"))} for run in runs)
    assert {"train/loss_epoch", "train/nme", "val/loss", "val/nme"} <= first.keys()
    assert again == pytest.approx(first, rel=0, abs=1e-6)
    assert other["train/loss_epoch"] != pytest.approx(first["train/loss_epoch"], rel=1e-4)


EPOCHS, BATCHES = 10, 15  # 10 whole epochs of the embedded sample (480 faces): about 20 s a run
SHORT_RUN = [
    "logger=none",
    "data.num_workers=0",
    "data.batch_size=32",
    f"trainer.max_epochs={EPOCHS}",
    f"trainer.limit_train_batches={BATCHES}",
    "validate_best=false",
    "callbacks.progress_bar.refresh_rate=1",  # every batch: how the test sees the run is mid-epoch
]
#: The progress bar of the second epoch (Lightning counts from 0): its batches done so far.
EPOCH_1_PROGRESS = re.compile(rf"Epoch 1:\s+\d+%\|[^|]*\| (\d+)/{BATCHES} ")


def _mid_epoch_1(progress: str) -> bool:
    """Whether epoch 1 has done at least one batch and has at least three to go."""
    return any(1 <= int(done) <= BATCHES - 3 for done in EPOCH_1_PROGRESS.findall(progress))


def _checkpoint(folder: Path) -> dict:
    return torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def _drain(stream: IO[bytes], output: list[str]) -> None:
    """Append what ``stream`` gives to ``output`` until it closes (progress bars end lines with \\r)."""
    for chunk in iter(lambda: stream.read1(4096), b""):
        output.append(chunk.decode(errors="replace"))


def _kill_mid_epoch_1(folder: Path, timeout: float = 300.0) -> None:
    """Run train.py in a subprocess and SIGKILL it once the epoch-0 last.ckpt exists and epoch 1 is
    part-way through (read from its progress bar)."""
    command = [sys.executable, str(ROOT / "train.py"), *SHORT_RUN, f"hydra.run.dir={folder}"]
    environment = os.environ | {"PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment
    )
    output: list[str] = []
    reader = threading.Thread(target=_drain, args=(process.stdout, output), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not ((folder / "checkpoints" / "last.ckpt").is_file() and _mid_epoch_1("".join(output))):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"train.py ended or stalled before epoch 1: {''.join(output)[-3000:]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    reader.join(timeout=10)


def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    uninterrupted = train(compose_train(SHORT_RUN, tmp_path / "uninterrupted"))
    whole = _checkpoint(tmp_path / "uninterrupted")

    _kill_mid_epoch_1(tmp_path / "killed")
    killed = _checkpoint(tmp_path / "killed")
    assert killed["epoch"] == 0 and killed["global_step"] == BATCHES, "killed in epoch 1, before its end"
    assert not (tmp_path / "killed" / "metrics.json").exists(), "the killed run did not finish"

    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    resumed = train(compose_train([*SHORT_RUN, f"ckpt_path={last}"], tmp_path / "resumed"))
    final = _checkpoint(tmp_path / "resumed")
    assert final["epoch"] == whole["epoch"] == EPOCHS - 1
    assert final["global_step"] == whole["global_step"] == EPOCHS * BATCHES, "steps continued, not restarted"
    for checkpoint in (whole, final):  # AdamW counts its steps per parameter: 6 before the kill + 18 after
        steps = {float(s["step"]) for s in checkpoint["optimizer_states"][0]["state"].values()}
        assert steps == {float(EPOCHS * BATCHES)}
    schedule, resumed_schedule = whole["lr_schedulers"][0], final["lr_schedulers"][0]
    assert resumed_schedule["last_epoch"] == schedule["last_epoch"] == EPOCHS * BATCHES
    assert resumed_schedule["_last_lr"] == pytest.approx(schedule["_last_lr"], rel=1e-9), (
        "same point of the schedule"
    )

    # The two runs differ only in their random draws after the kill (the resumed process re-seeds, so
    # its shuffles and augmentations are not those the uninterrupted run drew). Measured in this very
    # setting, five seeds (42 to 46) ended at val NME 0.132, 0.127, 0.122, 0.139, 0.141: mean 0.132,
    # standard deviation 6 %, so two runs differ by 8.7 % (one sd) and 5 % would fail about half the
    # time; 25 % is ~3 sd of that difference. The checks above are the exact ones; this one catches a
    # resume that lost the weights or trained on garbage, as does the margin to the mean-shape baseline
    # (0.203, which a 10-epoch run beats by a third).
    assert resumed["val/nme"] == pytest.approx(uninterrupted["val/nme"], rel=0.25)
    assert resumed["val/nme"] < 0.85 * resumed["val/nme_mean_shape"]
    print(
        f"final val/nme: uninterrupted {uninterrupted['val/nme']:.5f}, killed and resumed {resumed['val/nme']:.5f}"
    )


def test_a_run_resumed_from_an_epoch_end_trains_every_epoch_and_ends_bitwise_as_the_uninterrupted_run(
    tmp_path,
):
    """``last.ckpt`` as written at an epoch's end, every batch of the training set in each epoch (no
    ``limit_train_batches``): ``drop_last`` leaves a partial batch of faces untrained, so the batch count
    alone looked like a mid-epoch stop, the next epoch skipped the faces of a whole one and ran empty,
    and the resumed run trained one epoch fewer than asked."""
    run = [
        "logger=none",
        "data.num_workers=0",
        "trainer.max_epochs=3",
        "trainer.limit_val_batches=1",
        "validate_best=false",
        "cpu.threads=1",
        "callbacks.last_checkpoint.save_top_k=-1",  # keep each epoch's, to resume from the first
        "callbacks.last_checkpoint.filename='end{epoch}'",
        "+callbacks.last_checkpoint.auto_insert_metric_name=false",
    ]
    train(compose_train(run, tmp_path / "whole"))
    ends = sorted((tmp_path / "whole" / "checkpoints").glob("end*.ckpt"))
    assert len(ends) == 3, ends
    first = torch.load(ends[0], map_location="cpu", weights_only=False)
    batches = first["global_step"]
    assert first["epoch"] == 0 and batches > 1
    whole = torch.load(ends[-1], map_location="cpu", weights_only=False)

    train(compose_train([*run, f"ckpt_path={ends[0]}"], tmp_path / "resumed"))
    last = max((tmp_path / "resumed" / "checkpoints").glob("end*.ckpt"))
    resumed = torch.load(last, map_location="cpu", weights_only=False)
    assert resumed["epoch"] == whole["epoch"] == 2
    assert resumed["global_step"] == whole["global_step"] == 3 * batches, (
        "every epoch trained all its batches"
    )
    different = [
        k for k in whole["state_dict"] if not torch.equal(whole["state_dict"][k], resumed["state_dict"][k])
    ]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
