"""`run_export(cfg)`: checkpoint -> checked fp32 ONNX -> calibrated int8 ONNX -> accuracy, latency, report.

Run as `python -m export ckpt=<checkpoint> out=<folder>` (config: `conf/export.yaml`).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from export.calibration import calibration_batches
from export.gate import accuracy_gate, quantization_advice
from export.latency import cpu_threads, machine_description, measure_latency
from export.onnx_export import LandmarksAndPose, export_onnx
from export.quantize import METHODS, TARGET_TYPES, quantize_int8, resolve_keep_float
from export.report import render_report
from export.runtimes import (
    MissingRuntime,
    Written,
    check_formats,
    check_parity,
    export_mnn,
    export_ncnn,
    export_ncnn_int8,
    export_tflite,
    remove,
    runtime_latency,
    sidecar,
)
from pfld.data.datamodule import LandmarkDataModule
from pfld.evaluation import score
from pfld.evaluation.checkpoint import adopt_input, check_compatible
from pfld.inference import ModelSpec, OnnxLandmarkModel, TorchLandmarkModel, load_checkpoint
from pfld.io.atomic import atomic_write_text
from pfld.training.tracking import write_metrics

FP32_NAME, INT8_NAME = "model.onnx", "model_int8.onnx"
SCORE_KEYS = ("nme", "failure_rate", "auc", "faces", "unscored", "pose_mae_deg", "by_group")


def check_config(cfg: DictConfig) -> None:
    """Refuse settings that cannot work, before any work starts."""
    if not Path(str(cfg.ckpt)).is_file():
        raise FileNotFoundError(f"{cfg.ckpt}: checkpoint not found")
    quant = cfg.quantize
    if quant.enabled:
        if quant.target not in TARGET_TYPES:
            raise ValueError(f"quantize.target must be one of {sorted(TARGET_TYPES)}, got {quant.target!r}")
        if quant.method not in METHODS:
            raise ValueError(f"quantize.method must be one of {sorted(METHODS)}, got {quant.method!r}")
        if quant.calibration_split not in ("train", "val"):
            raise ValueError(
                f"quantize.calibration_split must be train or val, got {quant.calibration_split!r}"
            )
        if quant.calibration_images < 1:
            raise ValueError(
                f"quantize.calibration_images must be at least 1, got {quant.calibration_images}"
            )
    check_formats(list(cfg.get("formats", ["onnx"])))
    if cfg.parity.images < 1:
        raise ValueError(f"parity.images must be at least 1, got {cfg.parity.images}")
    if cfg.latency.runs < 1 or cfg.latency.sessions < 1:
        raise ValueError(f"latency.runs and latency.sessions must be at least 1, got {dict(cfg.latency)}")


def check_crops(dataset: Any, count: int) -> np.ndarray:
    """(min(count, N), C, S, S) real normalised crops spread over `dataset`, for the parity check."""
    return np.concatenate(list(calibration_batches(dataset, count, batch_size=64)))


def file_summary(paths: Path | list[Path], scores: dict[str, Any], latency: dict[str, Any]) -> dict[str, Any]:
    """A model's report entry: its file(s), total size, scores and latency."""
    files = [paths] if isinstance(paths, Path) else paths
    return {
        "file": ", ".join(p.name for p in files),
        "bytes": sum(p.stat().st_size for p in files),
        **scores,
        "latency": latency,
    }


def latencies(path: Path, image: np.ndarray, cfg: DictConfig) -> dict[str, Any]:
    """Batch-1 latency with one thread and with all of this machine's threads."""
    settings = {key: int(cfg.latency[key]) for key in ("runs", "warmup", "sessions")}
    return {
        "one": measure_latency(path, image, threads=1, **settings),
        "all": measure_latency(path, image, threads=0, **settings),
    }


def headline_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The flat numbers a multirun's `pfld.training.sweep.SweepSummary` tabulates (``metrics.json``)."""
    metrics: dict[str, Any] = {}
    for name, model in report["models"].items():
        metrics |= {f"{name}/{key}": model[key] for key in ("nme", "failure_rate", "auc")}
        if "bytes" in model:
            metrics[f"{name}/kib"] = model["bytes"] / 1024
            metrics[f"{name}/latency_ms"] = model["latency"]["one"]["median_ms"]
            if "all" in model["latency"]:
                metrics[f"{name}/latency_all_ms"] = model["latency"]["all"]["median_ms"]
    if report["gate"]:
        metrics["int8/nme_change"] = report["gate"]["relative_change"]
        metrics["gate/passed"] = report["gate"]["passed"]
    return metrics


def export_runtimes(
    cfg: DictConfig,
    model: Any,
    spec: ModelSpec,
    val_crops: np.ndarray,
    image: np.ndarray,
    scores: Any,
    models: dict[str, Any],
    folder: Path,
    calibration: list[np.ndarray] | None = None,
) -> dict[str, str]:
    """Write, check and score every requested format beside ONNX (`export.runtimes`), into ``models``;
    returns format -> why it was not written, for those that failed (the others are still written).
    ``calibration``: the int8 calibration batches (the ONNX int8 file's), None without quantisation."""
    failed: dict[str, str] = {}
    with_pose = bool(cfg.with_pose)
    network = (LandmarksAndPose(model) if with_pose else model.without_auxiliary()).eval()
    metadata = spec.with_pose_output(with_pose).to_metadata()
    runs, warmup = int(cfg.latency.runs), int(cfg.latency.warmup)
    for fmt in check_formats(list(cfg.formats))[1:]:
        written: list[Written] = []
        try:
            print(f"exporting to {fmt}")
            if fmt == "ncnn":
                written.append(
                    export_ncnn(network, spec.input_size, folder, channels=spec.channels, with_pose=with_pose)
                )
                if calibration is not None:
                    print("quantising the ncnn model to int8 on the same calibration crops")
                    method = str(cfg.quantize.method)
                    written.append(export_ncnn_int8(written[0], folder, calibration, method=method))
            elif fmt == "mnn":
                written.append(export_mnn(folder / FP32_NAME, folder, with_pose=with_pose))
                written.append(export_mnn(folder / FP32_NAME, folder, weight_bits=8, with_pose=with_pose))
            else:
                written.append(
                    export_tflite(
                        network, spec.input_size, folder, channels=spec.channels, with_pose=with_pose
                    )
                )
                if calibration is not None:
                    print("quantising the LiteRT model to int8 on the same calibration crops")
                    written.append(
                        export_tflite(
                            network,
                            spec.input_size,
                            folder,
                            channels=spec.channels,
                            calibration=calibration,
                            with_pose=with_pose,
                        )
                    )
            for item in written:
                parity = check_parity(
                    item, network, val_crops, float(cfg.parity.atol), float(cfg.parity.pose_atol_deg)
                )
                sidecar(item, metadata)
                latency = {"one": runtime_latency(item.single, image, runs, warmup)}
                models[item.key] = file_summary(item.files, scores(item.predictor), latency)
                models[item.key] |= {"parity": parity, **item.details}
                if item.quantized:
                    models[item.key]["gate"] = accuracy_gate(
                        models["fp32"]["nme"],
                        models[item.key]["nme"],
                        float(cfg.gate.max_relative_nme_increase),
                    ).as_dict()
        except (MissingRuntime, RuntimeError, OSError, ValueError) as error:
            remove([p for item in written for p in item.files])
            for item in written:
                models.pop(item.key, None)
            failed[fmt] = str(error)
            print(f"format {fmt} not written: {error}", file=sys.stderr)
    return failed


def run_export(cfg: DictConfig) -> dict[str, Any]:
    """Export ``cfg.ckpt`` to ``cfg.out``: ``model.onnx`` (checked against PyTorch on real validation
    crops), ``model_int8.onnx`` (unless ``quantize.enabled=false``), ``report.json``, ``report.md`` and
    ``metrics.json`` (the headline numbers, for multirun summaries).

    Returns the report; its ``gate.passed`` says whether the int8 NME is within
    ``gate.max_relative_nme_increase`` of the fp32 NME (the command exits 1 when it is not).
    """
    check_config(cfg)
    checkpoint = str(cfg.ckpt)
    model, spec = load_checkpoint(checkpoint, with_pose=bool(cfg.with_pose))
    check_compatible(spec, cfg.data, checkpoint)
    adopt_input(cfg.data, spec)
    datamodule: LandmarkDataModule = instantiate(cfg.data)
    datamodule.setup("validate")
    loader = datamodule.val_dataloader()
    folder = Path(str(cfg.out))
    folder.mkdir(parents=True, exist_ok=True)
    normalization = spec.nme_normalization
    threshold = float(cfg.gate.failure_threshold)

    def scores(predictor: Any) -> dict[str, Any]:
        summary = score(predictor, loader, normalization, threshold, datamodule.val_subsets)
        return {key: summary[key] for key in SCORE_KEYS}

    print(f"exporting {checkpoint} to {folder / FP32_NAME}")
    val_crops = check_crops(loader.dataset, int(cfg.parity.images))  # the validation loader's: unaugmented
    exported = export_onnx(
        model,
        folder / FP32_NAME,
        spec.to_metadata(),
        with_pose=bool(cfg.with_pose),
        check_images=val_crops,
        opset=int(cfg.opset),
        atol=float(cfg.parity.atol),
        pose_atol_deg=float(cfg.parity.pose_atol_deg),
    )
    image = val_crops[:1]  # (1, C, S, S): the latency input, the first validation face
    print(f"scoring PyTorch and fp32 ONNX on {len(loader.dataset)} validation faces")
    models: dict[str, Any] = {
        "pytorch": scores(TorchLandmarkModel(model, spec)),
        "fp32": file_summary(
            exported.path, scores(OnnxLandmarkModel(exported.path)), latencies(exported.path, image, cfg)
        ),
    }
    report: dict[str, Any] = {
        "checkpoint": checkpoint,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "threads_all": cpu_threads(),
        "latency_runs": int(cfg.latency.runs) * int(cfg.latency.sessions),
        "faces": len(loader.dataset),
        "normalization": spec.normalization_mode,
        "failure_threshold": threshold,
        "with_pose": bool(cfg.with_pose),
        "metadata": spec.to_metadata(),
        "parity": {
            "landmarks_max_abs": exported.landmark_difference,
            "pose_max_abs_deg": exported.pose_difference_deg,
            "images": exported.check_images,
            "atol": float(cfg.parity.atol),
        },
        "models": models,
        "quantization": None,
        "gate": None,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    calibration = None  # the normalised calibration batches every int8 file is made from
    if cfg.quantize.enabled:
        quant = cfg.quantize
        keep_float = list(quant.keep_float)
        calibration_set = datamodule.eval_dataset(quant.calibration_split)
        calibration = list(calibration_batches(calibration_set, int(quant.calibration_images)))
        settings = {
            "target": str(quant.target),
            "per_channel": bool(quant.per_channel),
            "method": str(quant.method),
            "calibration_images": min(int(quant.calibration_images), len(calibration_set)),
            "calibration_split": str(quant.calibration_split),
            "keep_float": keep_float,
            "excluded_nodes": resolve_keep_float(exported.path, keep_float),
        }
        print(
            f"quantising to int8 ({settings['target']}, {settings['method']}) on "
            f"{settings['calibration_images']} {settings['calibration_split']} crops"
        )
        int8_path = quantize_int8(
            exported.path,
            folder / INT8_NAME,
            calibration,
            target=settings["target"],
            per_channel=settings["per_channel"],
            exclude=settings["excluded_nodes"],
            method=settings["method"],
        )
        models["int8"] = file_summary(
            int8_path, scores(OnnxLandmarkModel(int8_path)), latencies(int8_path, image, cfg)
        )
        gate = accuracy_gate(
            models["fp32"]["nme"], models["int8"]["nme"], float(cfg.gate.max_relative_nme_increase)
        )
        report["quantization"] = settings
        report["gate"] = gate.as_dict() | {"advice": [] if gate.passed else quantization_advice(settings)}
    report["formats_failed"] = export_runtimes(
        cfg, model, spec, val_crops, image, scores, models, folder, calibration
    )
    atomic_write_text(folder / "report.json", json.dumps(report, indent=2) + "\n")
    write_metrics(headline_metrics(report), folder)
    markdown = render_report(report)
    atomic_write_text(folder / "report.md", markdown)
    print(
        f"\n{markdown}\nwrote {', '.join(sorted(p.name for p in folder.iterdir() if p.is_file()))} to {folder}"
    )
    return report
