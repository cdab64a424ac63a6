"""How many threads the training process runs and how many DataLoader workers feed it.

PFLD's training step runs its convolutions on OpenMP threads that meet at a barrier after every layer:
when more threads want the cores than there are cores (DataLoader workers with threads of their own,
another job on the machine), one descheduled thread holds up the others at each of hundreds of
barriers a step, and a step slows down several times instead of in proportion. Measured on a 2-core
CPU with one other busy process: 2 threads ran a 0.25X step 2.7x slower than on an idle machine,
1 thread 1.5x slower (`scripts/benchmark.py`).

So: workers are single-threaded (torch, OpenCV) and the training process gets the cores that nothing
else keeps busy. ``auto`` chooses from the cores this process may run on (CPU affinity and a cgroup
quota) minus the load of other processes, measured briefly at the start; `AdaptiveThreads` measures
again while training and re-sets the thread count when that load comes or goes. Numbers override.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

AUTO = "auto"
#: CPU training with more than 2 free cores: one single-threaded worker (on a core of its own) per this
#: many free cores (a sample's data costs about 1/40 of its 0.25X training step on one core, 1/180 of
#: 1X; a worker with nothing to do sleeps on its queue).
CORES_PER_CPU_WORKER = 8
#: GPU training: workers are the bottleneck; leave one core for the training process.
MAX_GPU_WORKERS = 12


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota + 0.5)))
    return max(1, cores)


def _cgroup_quota() -> float | None:
    """Cores' worth of CPU time the cgroup may use (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


class LoadMeter:
    """Cores' worth of CPU time that other processes used since the last reading (Linux ``/proc``):
    all busy time of the machine minus this process and its children (DataLoader workers)."""

    def __init__(self) -> None:
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._sample()

    @staticmethod
    def supported() -> bool:
        return Path("/proc/stat").is_file() and Path("/proc/self/stat").is_file()

    def _sample(self) -> tuple[float, float, float] | None:
        """(wall seconds, busy CPU seconds of the machine, CPU seconds of this process tree)."""
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            values = [int(v) for v in fields]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            busy = (sum(values[:8]) - idle) / self._ticks  # guest time is already in user
            return time.monotonic(), busy, self._own_seconds()
        except (OSError, ValueError, IndexError):
            return None

    def _own_seconds(self) -> float:
        """CPU seconds of this process, its finished children (cutime, cstime) and its live ones."""
        total = 0.0
        for pid in (os.getpid(), *_children(os.getpid())):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd on
                used = fields[11:15] if pid == os.getpid() else fields[11:13]
                total += sum(int(v) for v in used) / self._ticks
            except (OSError, ValueError, IndexError):
                continue  # a worker that just exited
        return total

    def read(self) -> float | None:
        """Other processes' load since the previous `read` (or construction), in cores; None if unknown."""
        now = self._sample()
        previous, self._last = self._last, now
        if previous is None or now is None or now[0] - previous[0] <= 0:
            return None
        other = (now[1] - previous[1]) - (now[2] - previous[2])
        return max(0.0, other / (now[0] - previous[0]))


def _children(pid: int) -> list[int]:
    """Direct children of a process (DataLoader workers are direct children of the training process)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                found += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
    except OSError:
        pass
    return found


def other_load(seconds: float = 1.0, samples: int = 2) -> float:
    """Cores' worth of CPU that other processes keep busy: the least of ``samples`` readings over
    ``seconds`` in all, so that a passing burst (a command starting) is not taken for a running job;
    0 where it cannot be measured."""
    if not LoadMeter.supported():
        return 0.0
    meter, readings = LoadMeter(), []
    for _ in range(samples):
        time.sleep(seconds / samples)
        load = meter.read()
        readings.append(0.0 if load is None else load)
    return min(readings)


@dataclass(frozen=True)
class CpuPlan:
    """What a run uses: ``threads`` of the training process, ``workers`` single-threaded DataLoader
    workers, out of ``cores`` available with ``busy`` cores' worth used by other processes."""

    cores: int
    busy: float
    threads: int
    workers: int

    def describe(self) -> str:
        elsewhere = f", {self.busy:.1f} busy elsewhere" if self.busy >= 0.05 else ""
        worker = "worker" if self.workers == 1 else "workers"
        return f"{self.threads} threads, {self.workers} data {worker} ({self.cores} cores{elsewhere})"


def free_cores(cores: int, busy: float) -> int:
    """Cores left by other processes' load (rounded, at least 1)."""
    return max(1, cores - math.floor(busy + 0.5))


def plan_cpu(
    accelerator: str = "cpu",
    threads: int | str = AUTO,
    workers: int | str = AUTO,
    processes: int = 1,
    cores: int | None = None,
    busy: float | None = None,
) -> CpuPlan:
    """Threads and workers for one training process of ``processes`` on this machine.

    CPU, up to 2 free cores (its share of them under DDP): no worker, the training process prepares
    each batch between steps with every free core for the step. Measured on 2 cores (0.25X, 3 x 30
    steps): 0.93 of the step alone, against 0.90 with one worker beside 2 threads (a worker's time
    slices stall the step's threads at their barriers) and 0.91 with that worker at the lowest
    priority. More free cores: one worker per `CORES_PER_CPU_WORKER` of them, each on a core of its own,
    the rest for the step. GPU: all free cores but one become workers (at most `MAX_GPU_WORKERS`); the
    training process keeps 2 threads. ``threads`` or ``workers`` given as numbers are kept.
    """
    cores = available_cores() if cores is None else cores
    if busy is None:
        busy = other_load() if threads == AUTO or workers == AUTO else 0.0
    share = max(1, free_cores(cores, busy) // max(1, processes))
    on_gpu = accelerator not in ("cpu",)
    if on_gpu:
        auto_workers = max(0, min(share - 1, MAX_GPU_WORKERS))
        auto_threads = min(2, share)
    else:
        auto_workers = 0 if share <= 2 else max(1, share // CORES_PER_CPU_WORKER)
        auto_threads = share - auto_workers
    chosen_threads = auto_threads if threads == AUTO else _positive(threads, "cpu.threads", minimum=1)
    chosen_workers = auto_workers if workers == AUTO else _positive(workers, "data.num_workers", minimum=0)
    return CpuPlan(cores=cores, busy=busy, threads=chosen_threads, workers=chosen_workers)


def _positive(value: int | str, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be '{AUTO}' or an integer >= {minimum}, got {value!r}")
    return value


def cpu_computes_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (oneDNN's check: AMX or AVX512-BF16)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def single_threaded_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread in each worker (OpenCV's one thread comes from
    the parent, see `WorkerLoader`), so workers never compete with the training step's threads."""
    torch.set_num_threads(1)


@contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's thread count set to ``count`` inside the block, restored after it."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


class WorkerLoader(DataLoader):
    """A DataLoader whose workers start with one OpenCV thread.

    OpenCV's thread count must be set in the parent, just before the workers are forked: calling
    ``cv2.setNumThreads`` inside a freshly forked worker hangs now and then (OpenCV's pool lock can be
    inherited held; seen in about 1 of 5 forks here), and leaving it alone gives every worker a pool of
    as many threads as cores. The parent keeps its own setting outside the fork."""

    def _get_iterator(self) -> Any:
        if self.num_workers == 0:
            return super()._get_iterator()
        with opencv_threads(1):
            return super()._get_iterator()


class AdaptiveThreads(Callback):
    """Re-sets the training process's torch threads to the cores other processes leave free, every
    ``every_s`` seconds of training (measured over that interval): a job that starts beside a run slows
    it about in proportion instead of several times, and the threads come back when it ends.

    Only on a CPU, only when ``cpu.threads`` is ``auto``, and only where ``/proc`` can be read."""

    def __init__(self, every_s: float = 30.0, processes: int = 1, verbose: bool = True) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be positive, got {every_s}")
        self.every_s, self.processes, self.verbose = float(every_s), max(1, processes), verbose
        self.cores = available_cores()
        self._meter: LoadMeter | None = None
        self._since = 0.0
        self.changes: list[tuple[int, int]] = []  # (global step, threads) whenever they change

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._meter = LoadMeter() if LoadMeter.supported() else None
        self._since = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._meter is None or time.monotonic() - self._since < self.every_s:
            return
        self._since = time.monotonic()
        load = self._meter.read()
        if load is None:
            return
        threads = max(1, free_cores(self.cores, load) // self.processes)
        if threads != torch.get_num_threads():
            if self.verbose:
                print(
                    f"\nother processes use {load:.1f} of {self.cores} cores: "
                    f"{threads} training threads (were {torch.get_num_threads()})"
                )
            torch.set_num_threads(threads)
            self.changes.append((trainer.global_step, threads))
