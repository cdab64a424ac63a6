"""Training speed on this machine: does the model wait for its data? Prints markdown tables.

    python scripts/benchmark.py [--data data/ytf68/train] [--json speed.json] [--widths 0.25 1.0]
                                [--busy 1] [--precision 32-true bf16-mixed] [OVERRIDE ...]

For each PFLD width, with the default config (`conf/train.yaml`: loss, optimiser, schedule, batch 64,
112 px, 68 points) on a prepared split (``--data``) or the embedded sample:

- ``step_img_s``: the training step alone (forward with the pose net, loss, backward, AdamW step) on
  one batch that is already in memory, channels_last, with the threads ``train.py`` would choose;
- ``data_samples_s_per_process``: the data pipeline alone in one process (augmentation, the
  angle update, collation into a batch), i.e. what one DataLoader worker delivers;
- ``fed_img_s``: the real training loop, a Lightning ``fit`` with the real datamodule, DataLoader and
  module and the threads and workers ``train.py`` would choose (`pfld.cpu_budget.plan_cpu`), timed
  over ``--steps`` steps after a warm-up;
- ``fed_over_step``: fed_img_s / step_img_s, 1.0 when the model never waits for its data.

Each is the median of ``--rounds`` interleaved rounds (all rounds are in the JSON).

``--precision bf16-mixed`` adds the step alone under bf16 autocast (`trainer=cpu_bf16`, or the GPU's
``trainer=gpu``). ``--busy N`` starts N busy processes before anything is measured, to see a run share
the machine (the plan sees them and takes fewer threads). ``--device cuda`` measures on a GPU. Also
reported: single-image inference latency. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PFLD_ROOT", str(ROOT))

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, open_dict
from torch.utils.data import default_collate

from pfld.cpu_budget import CpuPlan, cpu_computes_bf16, plan_cpu
from pfld.data.datamodule import LandmarkDataModule
from pfld.training.loop import model_spec
from pfld.training.module import PFLDModule


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


def config(
    width: float, data: Path | None, batch: int, precision: str, device: str, extra: list[str] = ()
) -> DictConfig:
    """`conf/train.yaml` as `train.py` composes it, for ``width`` on ``data`` (a prepared split), with the
    ``extra`` overrides (e.g. ``model.pose_channels=[32,16,32,16]``)."""
    overrides = [f"model.backbone.width={width}", f"data.batch_size={batch}", "logger=none", *extra]
    if device == "cuda":
        overrides.append("trainer=gpu")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(ROOT / "logs" / "benchmark")
        cfg.trainer.precision = precision
        if data is not None:
            cfg.data.train = [
                {"_target_": "pfld.data.store.load_faces", "_partial_": True, "folder": str(data)}
            ]
            cfg.data.val = []
    return cfg


def build(cfg: DictConfig, plan: CpuPlan) -> tuple[LandmarkDataModule, PFLDModule]:
    datamodule: LandmarkDataModule = instantiate(cfg.data)
    datamodule.num_workers = plan.workers
    datamodule.pin_memory = cfg.trainer.accelerator != "cpu"
    datamodule.setup("fit")
    module = PFLDModule(
        cfg.model, cfg.loss, cfg.optimizer, model_spec(datamodule).to_hparams(), cfg.scheduler
    )
    module.initialize_from_data(datamodule.mean_shape(), datamodule.class_fractions())
    return datamodule, module


def step_seconds(
    module: PFLDModule, batch: dict[str, torch.Tensor], repeats: int, precision: str, device: str
) -> float:
    """One training step on a batch already on the device and normalised: forward with the pose net,
    the configured loss (`PFLDModule.compute_loss`, as in training), backward, the configured optimiser's
    step."""
    module = module.to(device).train()
    batch = module.on_after_batch_transfer({k: v.to(device) for k, v in batch.items()}, 0)
    optimizer = instantiate(module.hparams.optimizer)(module.parameters())  # conf/optimizer, as trained
    autocast = precision.startswith("bf16")

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = module.compute_loss(batch)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return timed(step, repeats)


def data_samples_per_second(datamodule: LandmarkDataModule, count: int) -> float:
    """One process: ``count`` augmented samples, collated into batches."""
    dataset = datamodule.train_dataloader().dataset
    batch = datamodule.batch_size
    start = time.perf_counter()
    for first in range(0, count, batch):
        default_collate([dataset[(first + i) % len(dataset)] for i in range(batch)])
    return (count // batch * batch) / (time.perf_counter() - start)


class StepClock(Callback):
    """Times training batches after ``warmup`` of them (workers starting, allocator warming)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.images, self.seconds = warmup, 0.0, 0, 0.0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: dict[str, torch.Tensor],
        batch_idx: int,
    ) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif trainer.global_step > self.warmup:
            self.images += len(batch["image"])
            self.seconds = time.perf_counter() - self.start


def fed_images_per_second(
    cfg: DictConfig, datamodule: LandmarkDataModule, module: PFLDModule, steps: int, warmup: int = 3
) -> float:
    """The real training loop (Lightning fit, the datamodule's DataLoader) for ``warmup + steps`` steps."""
    clock = StepClock(warmup)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        max_steps=warmup + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=datamodule)
    return clock.images / clock.seconds


def inference_ms(module: PFLDModule, repeats: int) -> float:
    model = module.model.without_auxiliary().eval().cpu()
    image = torch.randn(1, 3, 112, 112).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return timed(lambda: model(image), repeats * 10) * 1000


def machine() -> dict[str, Any]:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": name,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": cpu_computes_bf16(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def start_busy(count: int) -> list[int]:
    """``count`` processes that keep one core each busy until killed, started through a shell that exits
    at once, so that they are not this process's children (as another job's processes would be)."""
    shell = f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"
    return [
        int(subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True).stdout)
        for _ in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None, help="a prepared split (default: embedded sample)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats of the step alone")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of the fed training loop")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--precision", nargs="+", default=["32-true"], help="also bf16-mixed")
    parser.add_argument("--busy", type=int, default=0, help="busy processes beside the benchmark")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="the step's threads (default: what train.py would choose)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "overrides", nargs="*", help="train config overrides, e.g. model.pose_channels=[32,16,32,16]"
    )
    args = parser.parse_args()

    busy = start_busy(args.busy)
    try:
        plan = plan_cpu("cpu" if args.device == "cpu" else "gpu", threads=args.threads or "auto")
        torch.set_num_threads(plan.threads)
        results: dict[str, Any] = {
            "machine": machine(),
            "plan": plan.__dict__,
            "busy_processes": args.busy,
            "data": str(args.data or "embedded sample"),
            "batch": args.batch,
            "overrides": args.overrides,
        }
        print(f"{results['machine']}\nplan: {plan.describe()}\n")
        for width in args.widths:
            cfg = config(width, args.data, args.batch, args.precision[0], args.device, args.overrides)
            datamodule, module = build(cfg, plan)
            batch = next(iter(datamodule.train_dataloader()))
            rounds: dict[str, list[float]] = {}
            for _ in range(args.rounds):  # interleaved, so that a slow spell of the machine hits both
                for precision in args.precision:
                    seconds = step_seconds(module, batch, args.repeats, precision, args.device)
                    key = "step_img_s" if precision == args.precision[0] else f"step_img_s_{precision}"
                    rounds.setdefault(key, []).append(args.batch / seconds)
                samples = data_samples_per_second(datamodule, 8 * args.batch)
                rounds.setdefault("data_samples_s_per_process", []).append(samples)
                fed = fed_images_per_second(cfg, datamodule, module, args.steps)
                rounds.setdefault("fed_img_s", []).append(fed)
            row: dict[str, Any] = {key: statistics.median(values) for key, values in rounds.items()}
            row["fed_over_step"] = row["fed_img_s"] / row["step_img_s"]
            row["rounds"] = rounds
            row["inference_ms"] = inference_ms(module, args.repeats)
            row["train_faces"] = len(datamodule.train_faces)
            results[str(width)] = row
            figures = ", ".join(f"{k} {v:.3g}" for k, v in row.items() if k != "rounds")
            print(f"PFLD {width}X: {figures}", flush=True)
    finally:
        for pid in busy:
            os.kill(pid, signal.SIGKILL)

    widths = [str(w) for w in args.widths]
    settings = f", {' '.join(args.overrides)}" if args.overrides else ""
    print(f"\ndata: {results['data']}, batch {args.batch}{settings}, {plan.describe()}\n")
    print("| measurement | " + " | ".join(f"PFLD {w}X" for w in widths) + " |")
    print("|---|" + "---:|" * len(widths))
    labels = {
        "step_img_s": "training step alone (img/s)",
        **{f"step_img_s_{p}": f"training step alone, {p} (img/s)" for p in args.precision[1:]},
        "data_samples_s_per_process": "data alone, 1 process (samples/s)",
        "fed_img_s": "training fed by the DataLoader (img/s)",
        "fed_over_step": "fed / step alone",
        "inference_ms": "inference, 1 image (ms)",
    }
    for key, label in labels.items():
        print(f"| {label} | " + " | ".join(f"{results[w][key]:.3g}" for w in widths) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
