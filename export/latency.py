"""onnxruntime latency of an ONNX model on this machine's CPU: batch 1, median of many runs after warm-up."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from pfld.inference.models import onnx_session


def cpu_threads() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def machine_description() -> str:
    """One line naming the CPU and how many threads this process may use."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), name
            )
    except OSError:
        pass
    return f"{name}, {cpu_threads()} threads, onnxruntime {onnxruntime.__version__}"


def measure_latency(
    path: str | Path, image: np.ndarray, threads: int, runs: int = 200, warmup: int = 20, sessions: int = 3
) -> dict[str, Any]:
    """Milliseconds per call of the model at `path` on `image` (1, C, S, S) with `threads` intra-op
    threads: `runs` timed calls after `warmup` untimed ones in each of `sessions` fresh sessions.

    Returns the median, 10th and 90th percentile over all timed calls, and each session's median: with
    several threads on a small machine, where onnxruntime's threads land varies from one session to the
    next (on 2 cores one session in three ran a 0.25X model at 0.39 ms instead of 0.17 ms).
    """
    if runs < 1 or warmup < 0 or sessions < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0, sessions >= 1; got {runs}, {warmup}, {sessions}")
    rows = []
    for _ in range(sessions):
        runner = onnx_session(path, threads)
        feeds = {runner.get_inputs()[0].name: np.ascontiguousarray(image, dtype=np.float32)}
        rows.append(time_calls(lambda runner=runner, feeds=feeds: runner.run(None, feeds), runs, warmup))
    times = np.stack(rows)
    return {
        "threads": threads if threads > 0 else cpu_threads(),
        **latency_summary(times),
        "session_medians_ms": [float(m) for m in np.median(times, axis=1)],
        "runs": runs,
        "warmup": warmup,
        "sessions": sessions,
    }


def time_calls(call: Callable[[], Any], runs: int, warmup: int) -> np.ndarray:
    """(runs,) milliseconds of ``runs`` timed calls of ``call`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        call()
        times[i] = time.perf_counter() - start
    return times * 1000.0


def latency_summary(times_ms: np.ndarray) -> dict[str, float]:
    """Median, 10th and 90th percentile of call times in milliseconds."""
    return {
        "median_ms": float(np.median(times_ms)),
        "p10_ms": float(np.percentile(times_ms, 10)),
        "p90_ms": float(np.percentile(times_ms, 90)),
    }
