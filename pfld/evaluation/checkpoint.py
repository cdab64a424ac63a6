"""`evaluate(cfg)`: score a training checkpoint or an exported ONNX model on a data set's validation split
and write the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, open_dict

from pfld.data.datamodule import LandmarkDataModule
from pfld.data.schemes.mapping import SchemeMapping, find_mapping
from pfld.evaluation.mapped import MappedModel
from pfld.evaluation.report import write_report
from pfld.evaluation.scores import metrics_table
from pfld.inference import ModelSpec
from pfld.inference.models import load_landmark_model
from pfld.io.digest import sha256_file
from pfld.metrics import resolve_normalization

#: Input settings a checkpoint fixes (its data description); the data config's values are replaced.
INPUT_KEYS: tuple[str, ...] = ("input_size", "channels", "crop_scale", "mean", "std")


def check_compatible(spec: ModelSpec, data: DictConfig, checkpoint: str) -> None:
    """Refuse a data set whose points differ from the checkpoint's (count, then scheme name): export
    calibrates and gates on the model's own points (``evaluate.py`` scores through a mapping instead)."""
    scheme = instantiate(data.scheme)
    if spec.num_points != scheme.num_points:
        raise ValueError(
            f"{checkpoint} predicts {spec.num_points} points ({spec.scheme}) but the "
            f"data's scheme {scheme.name!r} has {scheme.num_points}: choose a data set with the checkpoint's "
            "scheme (data=<name>)"
        )
    if spec.scheme != scheme.name:
        raise ValueError(
            f"{checkpoint} was trained on scheme {spec.scheme!r} but the data's is {scheme.name!r}"
        )


def data_mapping(spec: ModelSpec, data: DictConfig, checkpoint: str) -> SchemeMapping | None:
    """None when the data's scheme is the checkpoint's; else the mapping from the data's scheme to the
    checkpoint's (a file in ``data.mappings`` first, then the shipped ones), whose points are scored
    (`MappedModel`). Refuses schemes that no mapping relates."""
    scheme = instantiate(data.scheme)
    if spec.scheme == scheme.name and spec.num_points == scheme.num_points:
        return None
    try:
        return find_mapping(scheme.name, spec.scheme, data.get("mappings") or ())
    except ValueError as error:
        raise ValueError(
            f"{checkpoint} predicts {spec.num_points} {spec.scheme!r} points but the data's scheme "
            f"{scheme.name!r} has {scheme.num_points}, and {error}; or choose a data set with the "
            "checkpoint's scheme (data=<name>)"
        ) from None


def adopt_input(data: DictConfig, spec: ModelSpec) -> None:
    """Set the data config's input size, channels, crop scale, mean and std to the checkpoint's (with a message
    for each that changes): the model was trained on those crops."""
    description = spec.to_hparams() | {"channels": spec.channels}  # RGB checkpoints do not store it
    with open_dict(data):
        for key in INPUT_KEYS:
            value, current = description[key], data.get(key)
            if isinstance(current, ListConfig):
                current, value = list(current), list(value)
            if current is not None and current != value:
                print(f"data.{key}: using the checkpoint's {value} instead of {current}")
            data[key] = value


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt`` (a ``.ckpt`` or an exported ``.onnx``) on ``cfg.data``'s validation split; write ``metrics.json``, ``metrics.md``,
    ``val_ced.png``, ``val_predictions.png``, ``val_groups.md`` and ``val_faces.csv`` to ``cfg.out``; print the table.

    The NME is over the data config's ``normalization`` (the data set's convention unless
    ``data.normalization`` says otherwise); a line says so when it is not the checkpoint's.

    Returns `summarize`'s dict with ``checkpoint``, its ``checkpoint_sha256`` (which version of the file was
    scored: a zoo card finds the commit that held it) and ``normalization`` added.
    """
    checkpoint = str(cfg.ckpt)
    model = load_landmark_model(checkpoint, with_pose=None)  # a .ckpt, or an exported .onnx
    mapping = data_mapping(model.spec, cfg.data, checkpoint)
    adopt_input(cfg.data, model.spec)
    datamodule: LandmarkDataModule = instantiate(cfg.data)
    datamodule.setup("validate")
    scored_points = None
    if mapping is not None:
        model = MappedModel(model, mapping, datamodule.normalization, datamodule.normalization_pair)
        scored_points = mapping.used
        print(
            f"scoring {model.spec.num_points}-point {mapping.source.name!r} faces through {mapping.where}: "
            f"{int(mapping.used.sum())} of their points, {mapping.derived.sum()} of them means of the "
            f"model's; NME {datamodule.normalization}"
        )
    if datamodule.normalization != model.spec.normalization_mode:
        print(
            f"NME over the data's {datamodule.normalization} (data.normalization), not the checkpoint's "
            f"{model.spec.normalization_mode}"
        )
    folder = Path(cfg.out)
    summary = write_report(
        model,
        datamodule.val_dataloader(),
        resolve_normalization(datamodule.normalization, datamodule.normalization_pair),
        folder,
        subsets=datamodule.val_subsets,
        threshold=cfg.failure_threshold,
        points=scored_points,
    )
    summary |= {
        "checkpoint": checkpoint,
        "checkpoint_sha256": sha256_file(checkpoint),
        "normalization": datamodule.normalization,
    }
    if mapping is not None:
        summary |= {"scheme": mapping.source.name, "mapping": mapping.where}
    (folder / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = metrics_table(summary)
    (folder / "metrics.md").write_text(f"# {checkpoint}\n\n{table}\n")
    print(
        f"{table}\n\nwrote metrics.json, metrics.md, val_ced.png, val_predictions.png, val_faces.csv to {folder}"
    )
    return summary
