"""Speed of the pieces that bound training and inference on this machine; prints a markdown table.

    python scripts/benchmark.py [--batch 64] [--repeats 10] [--data data/shared300w/train]

Measures: a training step (forward with pose, loss, backward, AdamW step) for PFLD 0.25X and 1X with
and without channels_last; single-image inference latency of the model without the auxiliary net;
the augmented data pipeline alone (samples per second in one process, and through a DataLoader with
persistent workers), on a prepared split (``--data``) or, by default, the embedded sample; and the
two together: a 0.25X training loop fed by that DataLoader. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch

from pfld.data.datamodule import LandmarkDataModule
from pfld.data.readers import read_landmark_csv
from pfld.data.schemes import ibug_68
from pfld.data.store import load_faces
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


def training_datamodule(prepared: Path | None, batch: int, workers: int) -> LandmarkDataModule:
    """The training pipeline on a prepared split (memory-mapped) or on the embedded sample."""
    source = partial(load_faces, prepared) if prepared else partial(read_landmark_csv, EMBEDDED / "train.csv")
    datamodule = LandmarkDataModule(
        train=[source], scheme=ibug_68(), val_fraction=0.1, batch_size=batch, num_workers=workers
    )
    datamodule.setup("fit")
    return datamodule


def data_samples_per_second(datamodule: LandmarkDataModule, count: int = 512) -> float:
    """One process: augmentation, pose fit and normalisation of ``count`` samples."""
    dataset = datamodule.train_dataloader().dataset
    start = time.perf_counter()
    for index in range(count):
        dataset[index % len(dataset)]
    return count / (time.perf_counter() - start)


def endless(loader: torch.utils.data.DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """Batches forever: a new epoch (same persistent workers) when one ends."""
    while True:
        yield from loader


def loader_samples_per_second(datamodule: LandmarkDataModule, batches: int = 24) -> float:
    """A DataLoader with persistent workers, batches collated, after its first batch (worker start)."""
    loader = endless(datamodule.train_dataloader())
    next(loader)
    start = time.perf_counter()
    count = sum(len(next(loader)["image"]) for _ in range(batches))
    return count / (time.perf_counter() - start)


def fed_training_samples_per_second(datamodule: LandmarkDataModule, batches: int = 16) -> float:
    """0.25X training steps (channels_last) fed by the DataLoader: what a real epoch sustains."""
    model = PFLD(PFLDBackbone(0.25), num_points=68, input_size=112).train()
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = L1Loss()
    loader = endless(datamodule.train_dataloader())
    for _ in range(2):  # warm-up: worker start, allocator
        next(loader)
    start, count = time.perf_counter(), 0
    for _ in range(batches):
        batch = next(loader)
        landmarks, _ = model.forward_with_pose(batch["image"].contiguous(memory_format=torch.channels_last))
        loss = criterion(landmarks, batch["landmarks"], mask=batch["visible"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += len(landmarks)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--data", type=Path, default=None, help="a prepared split (default: embedded sample)")
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
    step_rate = args.batch / training_step_seconds(0.25, True, args.batch, args.repeats)
    datamodule = training_datamodule(args.data, args.batch, args.workers)
    where = args.data or "embedded sample"
    one = data_samples_per_second(datamodule)
    loader = loader_samples_per_second(datamodule)
    fed = fed_training_samples_per_second(datamodule)
    print(f"\ndata: {where}, {len(datamodule.train_faces)} faces")
    print("| pipeline | samples/s |")
    print("|---|---:|")
    print(f"| data alone, 1 process (augmentation + pose fit + normalisation) | {one:.0f} |")
    print(f"| data alone, DataLoader with {args.workers} persistent workers | {loader:.0f} |")
    print(f"| 0.25X training step alone (channels_last) consumes | {step_rate:.0f} |")
    print(f"| 0.25X training fed by the DataLoader | {fed:.0f} |")
    print(
        f"\ndata pipeline / 0.25X step consumption: {loader / step_rate:.1f}x (1 process: {one / step_rate:.1f}x)"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
