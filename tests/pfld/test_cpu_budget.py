"""Threads and workers: chosen from the free cores, workers single-threaded, threads follow the load."""

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from pfld.cpu_budget import (
    AdaptiveThreads,
    LoadMeter,
    WorkerLoader,
    available_cores,
    free_cores,
    other_load,
    plan_cpu,
    single_threaded_worker,
)


def test_cpu_plan_takes_the_free_cores():
    idle = plan_cpu("cpu", cores=2, busy=0.0)
    assert (idle.threads, idle.workers) == (2, 0), "2 cores: the data is prepared between steps"
    assert plan_cpu("cpu", cores=2, busy=0.3).threads == 2, "a little background load rounds away"
    shared = plan_cpu("cpu", cores=2, busy=1.0)  # one other busy process: 1 thread, data between steps
    assert (shared.threads, shared.workers) == (1, 0)
    four = plan_cpu("cpu", cores=4, busy=0.0)
    assert (four.threads, four.workers) == (3, 1), "a worker gets a core of its own"
    big = plan_cpu("cpu", cores=64, busy=0.0)
    assert (big.threads, big.workers) == (56, 8)
    assert plan_cpu("cpu", cores=8, busy=0.0, processes=2).threads == 3  # DDP: each process its share
    gpu = plan_cpu("gpu", cores=16, busy=0.0)
    assert (gpu.threads, gpu.workers) == (2, 12)
    assert plan_cpu("gpu", cores=1, busy=0.0).workers == 0
    assert free_cores(2, 5.0) == 1, "never fewer than one core"


def test_numbers_override_auto_and_bad_ones_are_refused():
    plan = plan_cpu("cpu", threads=3, workers=0, cores=2, busy=0.0)
    assert (plan.threads, plan.workers) == (3, 0)
    with pytest.raises(ValueError, match="cpu.threads must be 'auto' or an integer >= 1"):
        plan_cpu("cpu", threads=0, cores=2, busy=0.0)
    with pytest.raises(ValueError, match="data.num_workers"):
        plan_cpu("cpu", workers="many", cores=2, busy=0.0)


class _ThreadCounts(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        image = np.zeros((300, 300, 3), np.uint8)
        cv2.warpAffine(image, np.eye(2, 3), (200, 200))
        return torch.tensor([torch.get_num_threads(), cv2.getNumThreads()])


def test_workers_are_single_threaded_and_the_parent_keeps_its_threads():
    cv2.setNumThreads(2)
    for _ in range(3):  # workers forked again each epoch
        loader = WorkerLoader(
            _ThreadCounts(), batch_size=4, num_workers=2, worker_init_fn=single_threaded_worker
        )
        counts = torch.cat(list(loader))
        assert counts.max() == 1, "a worker runs more than one torch or OpenCV thread"
    assert cv2.getNumThreads() == 2


def _need_two_idle_cores() -> None:
    if not LoadMeter.supported():
        pytest.skip("measuring other processes' load needs Linux /proc")
    if available_cores() < 2 or other_load(0.5) > 0.3:
        pytest.skip("needs two cores that nothing else keeps busy")


def _start_stranger() -> int:
    """A busy process that is not our child (its parent shell exits at once): another job's."""
    shell = f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"
    return int(subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True).stdout)


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def busy_process():
    _need_two_idle_cores()
    pid = _start_stranger()
    time.sleep(0.3)
    yield pid
    _stop(pid)


def test_the_load_meter_sees_another_busy_process_and_not_our_own_work(busy_process):
    meter = LoadMeter()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # this process's own work is not "other load"
        sum(range(1000))
    load = meter.read()
    assert load is not None and 0.6 < load < 1.6, load


def test_adaptive_threads_give_way_to_a_busy_process_and_come_back():
    _need_two_idle_cores()
    threads = torch.get_num_threads()
    try:
        callback = AdaptiveThreads(every_s=0.5, verbose=False)
        callback.cores = 2
        trainer = SimpleNamespace(global_step=0)
        torch.set_num_threads(2)
        callback.on_train_start(trainer, None)
        pid = _start_stranger()
        try:
            time.sleep(0.7)
            callback.on_train_batch_end(trainer)
            assert torch.get_num_threads() == 1
        finally:
            _stop(pid)
        time.sleep(0.7)
        trainer.global_step = 5
        callback.on_train_batch_end(trainer)
        assert torch.get_num_threads() == 2 and callback.changes == [(0, 1), (5, 2)]
    finally:
        torch.set_num_threads(threads)
