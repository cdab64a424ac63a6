"""Speed of the pieces that bound training and inference on this machine; prints a markdown table.

    python scripts/benchmark.py [--batch 64] [--repeats 10]

Measures: a training step (forward with pose, loss, backward, AdamW step) for PFLD 0.25X and 1X with
and without channels_last; single-image inference latency of the model without the auxiliary net;
and the augmented data pipeline (one process, samples per second). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch

from pfld.data.datamodule import LandmarkDataModule
from pfld.data.readers import read_landmark_csv
from pfld.data.schemes import ibug_68
from pfld.losses import L1Loss
from pfld.models import PFLD, PFLDBackbone

EMBEDDED = Path(__file__).resolve().parents[1] / "data" / "embedded"


def timed(function: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def training_step_seconds(width: float, channels_last: bool, batch: int, repeats: int) -> float:
    model = PFLD(PFLDBackbone(width), num_points=68, input_size=112).train()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch, 3, 112, 112).contiguous(memory_format=layout)
    target = torch.rand(batch, 68, 2)
    criterion = L1Loss()

    def step() -> None:
        landmarks, _ = model.forward_with_pose(images)
        loss = criterion(landmarks, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed(step, repeats)


def inference_seconds(width: float, repeats: int) -> float:
    model = PFLD(PFLDBackbone(width), num_points=68, input_size=112).without_auxiliary().eval()
    model.to(memory_format=torch.channels_last)
    image = torch.randn(1, 3, 112, 112).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return timed(lambda: model(image), repeats * 10)


def data_samples_per_second(count: int = 256) -> float:
    datamodule = LandmarkDataModule(
        train=[lambda: read_landmark_csv(EMBEDDED / "train.csv")],
        scheme=ibug_68(),
        val_fraction=0.1,
        num_workers=0,
    )
    datamodule.setup("fit")
    dataset = datamodule.train_dataloader().dataset
    start = time.perf_counter()
    for index in range(count):
        dataset[index % len(dataset)]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, input 112, 68 points\n"
    )
    print("| measurement | PFLD 0.25X | PFLD 1X |")
    print("|---|---:|---:|")
    for channels_last in (True, False):
        cells = []
        for width in (0.25, 1.0):
            seconds = training_step_seconds(width, channels_last, args.batch, args.repeats)
            cells.append(f"{seconds * 1000:.0f} ms ({args.batch / seconds:.0f} img/s)")
        layout = "channels_last" if channels_last else "contiguous (NCHW)"
        print(f"| training step, {layout} | {cells[0]} | {cells[1]} |")
    latency = [inference_seconds(width, args.repeats) * 1000 for width in (0.25, 1.0)]
    print(f"| inference, 1 image, no auxiliary net | {latency[0]:.2f} ms | {latency[1]:.2f} ms |")
    print(f"\ndata pipeline (augmentation + pose fit, 1 process): {data_samples_per_second():.0f} samples/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
