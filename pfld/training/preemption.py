"""A run stopped by a signal is saved and says so; checkpoints are never half-written.

Schedulers preempt with SIGTERM (then SIGKILL a little later); people press Ctrl+C (SIGINT); SLURM's
``--signal=USR1@90`` sends SIGUSR1 before the time limit. On any of them `PreemptionCheckpoint`
lets the current batch finish, writes ``last.ckpt`` with the state of that moment (mid-epoch), prints the
command that resumes it, and the run exits with ``128 + signal`` (143, 130, 138): never 0, so a job chain
does not take a half-trained model as finished. A second Ctrl+C stops at once. Under SLURM with
Lightning's auto-requeue, SIGUSR1 is left to Lightning (it requeues the job, which then resumes with
``ckpt_path=auto``).

`AtomicCheckpointIO` writes every checkpoint to a temporary file in its own folder, flushes it to the
disk and renames it over the old one, so ``last.ckpt`` is always the previous or the new complete
checkpoint, whatever moment a kill or a full disk strikes. `resumable_checkpoint` turns ``ckpt_path=last``
or ``auto`` into the newest checkpoint of the run folder that loads.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pfld.io.atomic import atomic_save

#: The signals that stop a run gracefully, and the process's exit status for each (128 + number).
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def exit_status(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number (SIGTERM 143)."""
    return 128 + int(signum)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose files appear whole or not at all (see the module)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, Path(path))


def atomic_torch_save(obj: Any, path: Path, save: Any = torch.save) -> None:
    """``save(obj, file)`` (torch.save) through `pfld.io.atomic.atomic_save`: a kill or a full disk
    leaves the previous checkpoint; the OSError of a full disk names the file."""
    atomic_save(path, lambda handle: save(obj, handle))


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM, SIGINT or SIGUSR1: finish the batch, save ``<dirpath>/<filename>.ckpt``, print how to
    resume, and make `pfld.training.loop.train` exit with `exit_status` of the signal (see the module)."""

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._trainer: L.Trainer | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self._trainer = trainer
        for signum in STOP_SIGNALS:
            if signum == signal.SIGUSR1 and _slurm_requeues(trainer):
                continue  # Lightning's SLURM handler requeues the job
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        trainer = self._trainer
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now, without saving
        self.received = signum
        print(
            f"\nreceived {signal.Signals(signum).name}: finishing this batch, then saving {self.path}",
            file=sys.stderr,
            flush=True,
        )
        previous = self._previous.get(signum)
        if signum == signal.SIGTERM and callable(previous):
            previous(signum, frame)  # Lightning's: stops the loops at the end of the batch (and DDP peers)
        if trainer is not None:
            trainer._signal_connector.received_sigterm = True  # the loops stop at the end of the batch

    def _restore(self) -> None:
        """Put back the handlers found at the start, unless someone (Lightning) has replaced ours since."""
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        if self.received is None:
            self.received = signal.SIGTERM  # Lightning's own handler saw it first
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            print(
                f"stopped by {signal.Signals(self.received).name} at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}; saved {self.path}\nresume with:\n  {resume_command(self.path)}",
                file=sys.stderr,
                flush=True,
            )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    @property
    def exit_status(self) -> int:
        return exit_status(self.received if self.received is not None else signal.SIGTERM)


class ResumeState(L.Callback):
    """Puts into every checkpoint where in its epoch the run is (batches trained) and the global random
    states (Python, NumPy, torch), and gives them back on resume: the training order and augmentation
    are functions of (seed, epoch, face) (`pfld.data.sampling`), so a resumed run skips the batches it
    had trained and goes on exactly as an uninterrupted one (bitwise on a CPU with the same threads)."""

    KEY = "pfld_resume"

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[self.KEY] = {
            "epoch": trainer.current_epoch,
            "batches": trainer.fit_loop.epoch_loop.batch_progress.current.completed,
            "world_size": trainer.world_size,
            "python": random.getstate(),  # tuples of ints: loadable with weights_only
            "numpy": _numpy_state(),
            "torch": torch.get_rng_state(),
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        state = checkpoint.get(self.KEY)
        if not state:
            return  # a checkpoint from before: the epoch restarts from its first batch
        datamodule = getattr(trainer, "datamodule", None)
        # saved after its epoch's last batch: nothing to skip, the next epoch starts from its first face
        if not _epoch_ended(checkpoint) and hasattr(datamodule, "resume_position"):
            # every process trained that many batches: the order is skipped for all of them (a
            # DistributedSampler shards what is left the same way)
            batches = int(state["batches"]) * int(state.get("world_size", 1))
            datamodule.resume_position = (int(state["epoch"]), batches)
        random.setstate(state["python"])
        numpy = state["numpy"]
        np.random.set_state(
            (
                numpy["kind"],
                numpy["key"].numpy().astype(np.uint32),
                numpy["pos"],
                numpy["has_gauss"],
                numpy["cached"],
            )
        )
        torch.set_rng_state(state["torch"])


def _epoch_ended(checkpoint: dict) -> bool:
    """Whether ``checkpoint`` was written after the last batch of its epoch (``last.ckpt`` at an
    epoch's end, or a signal during its last batch): Lightning then starts the next epoch, and skipping
    the batches trained would empty it. The batch count alone cannot tell: with ``drop_last`` a whole
    epoch leaves a partial batch of faces untrained."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
    return bool(progress.get("is_last_batch", False))


def _numpy_state() -> dict[str, Any]:
    """NumPy's global random state in types a ``weights_only`` checkpoint load accepts."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "kind": str(kind),
        "key": torch.from_numpy(key.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _slurm_requeues(trainer: L.Trainer) -> bool:
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    environment = trainer._accelerator_connector.cluster_environment
    return isinstance(environment, SLURMEnvironment) and environment.auto_requeue


def resume_command(checkpoint: Path) -> str:
    """The command line of this run with ``ckpt_path=<checkpoint>`` (Hydra's overrides when run by
    train.py; else the process's arguments)."""
    arguments: list[str]
    try:
        from hydra.core.hydra_config import HydraConfig

        arguments = list(HydraConfig.get().overrides.task)
        program = "python train.py"
    except ValueError:  # not inside a Hydra run
        arguments, program = sys.argv[1:], f"python {Path(sys.argv[0]).name}"
    kept = [a for a in arguments if not a.lstrip("+~").startswith("ckpt_path=")]
    return " ".join([program, *kept, f"ckpt_path={checkpoint}"])


def checkpoint_loads(path: Path) -> bool:
    """Whether ``path`` holds a complete pfld training checkpoint (loads, has weights and its loops)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - truncated, corrupt, not a checkpoint: all mean "not usable"
        return False
    return isinstance(checkpoint, dict) and "state_dict" in checkpoint and "loops" in checkpoint


def resolve_ckpt_path(value: str | None, output_dir: str | Path) -> str | None:
    """``ckpt_path`` as given -> the file to resume from: ``last`` (the newest usable checkpoint of this
    run's folder; an error if there is none), ``auto`` (the same, or None: a fresh start), a run folder
    (its newest usable checkpoint), or a file (as it is; `pfld.training.config_checks` checks it)."""
    if value is None or str(value) == "":
        return None
    text = str(value)
    if text in ("last", "auto"):
        found = resumable_checkpoint(output_dir)
        if found is None and text == "last":
            raise ValueError(
                f"ckpt_path=last: no usable checkpoint in {Path(output_dir) / 'checkpoints'}; give the run's "
                "folder (hydra.run.dir=<it>) or a checkpoint file"
            )
        print(
            f"ckpt_path={text}: "
            + (f"resuming from {found}" if found else "nothing to resume, starting fresh")
        )
        return None if found is None else str(found)
    if Path(text).is_dir():
        found = resumable_checkpoint(text)
        if found is None:
            raise ValueError(f"ckpt_path={text}: no usable checkpoint in {Path(text) / 'checkpoints'}")
        print(f"ckpt_path={text}: resuming from {found}")
        return str(found)
    return text


def resumable_checkpoint(folder: str | Path) -> Path | None:
    """The newest checkpoint of ``<folder>/checkpoints`` that loads (``last.ckpt`` first, then the others
    by time), or None; unreadable ones are named on stderr and skipped."""
    directory = Path(folder) / "checkpoints"
    if not directory.is_dir():
        return None
    finished = [p for p in directory.glob("*.ckpt") if not p.name.startswith(".")]  # not a write's temporary
    candidates = sorted(finished, key=lambda p: (p.name == "last.ckpt", p.stat().st_mtime))
    for path in reversed(candidates):
        if checkpoint_loads(path):
            return path
        print(f"warning: {path} is incomplete or corrupt; trying an older checkpoint", file=sys.stderr)
    return None


__all__ = [
    "STOP_SIGNALS",
    "AtomicCheckpointIO",
    "PreemptionCheckpoint",
    "ResumeState",
    "atomic_torch_save",
    "checkpoint_loads",
    "exit_status",
    "resolve_ckpt_path",
    "resumable_checkpoint",
    "resume_command",
]
