"""`python -m export.zoo RUN --name NAME`: a training run -> a model-zoo folder ``pretrained/NAME/``.

Writes ``model.ckpt`` (the run's best checkpoint without optimiser state), ``model.onnx`` and
``model_int8.onnx`` (the export command on the slim checkpoint, with the pose output when the run trained
its pose net; the int8 gate must pass) and ``MODEL_CARD.md`` (the data, the exact commands, the scores
per face class, pose MAE, sizes, latencies and the data's licence), all generated:

    python -m export.zoo logs/zoo/pfld-0.25x-68 --name pfld-0.25x-68 --data shared

A final fit (``experiment=final_fit``: every face, AFW included) names the run its settings and epochs were
chosen on: ``--validated-by logs/zoo/pfld-0.25x-68`` (its run folder, or an ``evaluate.py`` report of its
model: export/validation.py). Its last checkpoint is exported (no held-out faces to pick an epoch by), and
the card quotes that run's AFW figures as the model's accuracy; the export's own figures on AFW are then
training-set figures, kept for the int8 / fp32 comparison only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import open_dict

from export.command import FP32_NAME, INT8_NAME, run_export
from export.onnx_export import LandmarksAndPose
from export.provenance import PREPARE, SOURCES, teacher_lines, train_command, train_folders
from export.report import model_table, pose_table
from export.validation import Validation, best_checkpoint, last_checkpoint, read_validation, validation_lines
from pfld.inference.checkpoint import has_trained_pose_net, load_checkpoint, read_checkpoint
from pfld.inference.zoo import ZOO, slim_checkpoint
from pfld.io.atomic import atomic_write_text
from pfld.models.complexity import count_macs, count_parameters

ROOT = Path(__file__).resolve().parents[1]
#: The zoo's weights are stored rounded to float16 (half the checkpoint; the zoo stays under 20 MB); the
#: ONNX files are exported from the rounded weights, so every file of a folder is the same model.
STORED_DTYPE = torch.float16
GROUPS = ("all", "frontal", "profile", "head_up", "head_down")


def export_config(checkpoint: Path, out: Path, data: str, with_pose: bool, overrides: list[str] = ()) -> Any:
    """`conf/export.yaml` composed as ``python -m export`` would, for ``checkpoint``, plus ``overrides``."""
    from hydra import compose, initialize_config_dir

    overrides = [
        f"ckpt={checkpoint}",
        f"out={out}",
        f"data={data}",
        f"with_pose={str(with_pose).lower()}",
        *overrides,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("export", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        del cfg.hydra
    return cfg


def group_table(report: dict[str, Any]) -> str:
    """NME by face class (the validation set's groups), PyTorch / fp32 / int8."""
    lines = ["| class | faces | PyTorch | ONNX fp32 | ONNX int8 |", "|---|---:|---:|---:|---:|"]
    models = report["models"]
    for group in GROUPS:
        scores = [models[key]["by_group"].get(group) for key in ("pytorch", "fp32", "int8")]
        if scores[0] is None:
            continue
        cells = " | ".join(f"{s['nme']:.4f}" if s else "-" for s in scores)
        lines.append(f"| {group.replace('_', ' ')} | {int(scores[0]['faces'])} | {cells} |")
    return "\n".join(lines)


def render_card(
    name: str,
    run: Path,
    checkpoint: dict[str, Any],
    report: dict[str, Any],
    data: str,
    cost: dict[str, int],
    validations: Sequence[Validation] = (),
    overrides: Sequence[str] = (),
) -> str:
    """``MODEL_CARD.md``: what the model is, how it was made, how well it does, and the licence.
    ``validations``: a final fit's run before it (one per seed when several), none for a validation run.
    ``overrides``: the export's settings; those that shape the files (not ``latency.*``) are in its commands."""
    settings = "".join(f" {shlex.quote(o)}" for o in overrides if not o.startswith("latency."))
    hparams = checkpoint["hyper_parameters"]
    spec, model = report["metadata"], hparams["model"]
    width = float(model.get("backbone", {}).get("width", 1.0))
    folders = train_folders(run)
    train = [folder.name for folder in folders]
    taught = [teacher_lines(folder) for folder in folders if folder.manifest is not None]
    prepare = list(dict.fromkeys(PREPARE[f.source] for f in folders if f.source in PREPARE))
    gate = report["gate"]
    trained = json.loads((run / "metrics.json").read_text())["val/nme"]
    lines = [
        f"# {name}",
        "",
        (
            f"PFLD {width:g}X (MobileNetV2 backbone, multi-scale head) for {spec['pfld.num_landmarks']} points "
            f"(`{spec['pfld.scheme']}`), {spec['pfld.input_size']} px crops (crop scale {spec['pfld.crop_scale']}), "
            + (
                "with its auxiliary head-pose net as an output."
                if report["with_pose"]
                else "without a pose output (no trained pose net)."
            )
        ),
        "",
        f"{cost['parameters']:,} parameters and {cost['macs'] / 1e6:.1f} M multiply-adds for the landmarks"
        + (
            f"; with the pose output {cost['pose_parameters']:,} and {cost['pose_macs'] / 1e6:.1f} M."
            if "pose_macs" in cost
            else "."
        ),
        "",
        "## Use",
        "",
        "```bash",
        f"python predict.py photo.jpg --model pretrained/{name}/model_int8.onnx   # or clip.mp4, a folder",
        f"python evaluate.py ckpt=pretrained/{name}/model.ckpt data=300w out=eval/300w",
        "```",
        "",
        (
            "The ONNX files describe their input (crop, size, mean, std) and outputs in their metadata "
            "(docs/export.md shows how to use them without pfld)."
        ),
        "",
        "## How it was made",
        "",
        (
            f"- Data: trained on {', '.join(f'`{t}`' for t in train)}, validated on "
            f"{report['faces']} faces of `data={data}` (300W AFW: other photos and other people)"
            + (", which a final fit trains on too." if validations else ".")
        ),
        *(bullet for bullet, _ in taught),
        (
            f"- Trained {checkpoint.get('epoch', 0) + 1} epochs ("
            + (
                "the whole schedule: a final fit has no held-out faces to pick an epoch by"
                if validations
                else "best validation epoch"
            )
            + f"; {checkpoint.get('global_step', '?')} steps):"
        ),
        "",
        "```bash",
        *prepare,
        *(command for _, commands in taught for command in commands),
        *dict.fromkeys(command for before in validations for command in before.commands),
        train_command(run),
        f"python -m export.zoo <run folder> --name {name} --data {data}"
        + (" --validated-by <the run before the fit>" if validations else "")
        + settings,
        "```",
        "",
        (
            "- A final fit on every face (AFW included) with the recipe and epochs of the run before it; its "
            "accuracy below is that run's, on faces that run never trained on."
            if validations
            else "- This is the validation run itself, not a final fit on every face (AFW included): its figures "
            "are on faces it never trained on."
        ),
        (
            "- `model.ckpt`: weights and hyper-parameters (pose net included, no optimiser state); fine-tune with "
            f"`python train.py init_from=pretrained/{name}/model.ckpt ...` (other point counts too)."
        ),
        (
            f"- `model.onnx`, `model_int8.onnx`: `python -m export ckpt=pretrained/{name}/model.ckpt data={data} "
            f"with_pose={str(report['with_pose']).lower()}{settings}`; int8 target "
            f"`{report['quantization']['target']}`."
        ),
        "",
        "## Accuracy",
        "",
        *(validation_lines(validations) if validations else []),
        (
            f"The weights are stored as float16 (half the file): PyTorch NME {report['models']['pytorch']['nme']:.4f} "
            f"with them, {trained:.4f} with the run's float32 weights."
        ),
        "",
        (
            f"{report['normalization']} NME on the validation faces, FR and AUC at {report['failure_threshold']:g}; "
            f"latency: batch 1, median, onnxruntime on {report['machine']}."
        ),
        "",
        model_table(report),
        "",
        group_table(report),
        "",
        (
            f"int8 NME {gate['relative_change']:+.2%} against fp32 (the export gate's limit "
            f"{gate['max_relative_increase']:+.0%})."
        ),
    ]
    if report["with_pose"]:
        lines += ["", "Head pose (yaw, pitch, roll against the annotation's fit), MAE in degrees:", ""]
        lines += [pose_table(report)]
    sources = sorted({folder.source for folder in folders})
    lines += ["", "## Licence", "", "The weights were trained on:", ""]
    lines += [f"- {SOURCES.get(source, f'`data/{source}`: see its source')}" for source in sources]
    if taught:
        lines += ["", "and on points predicted by the teachers above: their own data's terms apply too."]
    lines += [
        "",
        (
            "The code is this repository's. Whether weights learnt from research-only data may be used in a "
            "product is for you to check against those terms."
        ),
        "",
    ]
    return "\n".join(lines)


def model_cost(checkpoint: Path) -> dict[str, int]:
    """Parameters and multiply-adds of the exported landmark model and, when the checkpoint has a trained
    pose net (exported with the pose output), of the model with it (``pose_*`` keys only then)."""
    landmarks, spec = load_checkpoint(checkpoint, with_pose=False)
    cost = {"parameters": count_parameters(landmarks), "macs": count_macs(landmarks, spec.input_size)}
    model, spec = load_checkpoint(checkpoint, with_pose=None)
    if spec.with_pose:  # the exported graph: LandmarksAndPose runs the pose net in eval mode too
        cost |= {
            "pose_parameters": count_parameters(model),
            "pose_macs": count_macs(LandmarksAndPose(model), spec.input_size),
        }
    return cost


def make_zoo_entry(
    run: Path,
    name: str,
    data: str = "shared",
    zoo: Path = ZOO,
    overrides: list[str] = (),
    validated_by: Path | Sequence[Path] | None = None,
) -> Path:
    """Write ``zoo/name/`` from training run ``run`` (see the module), exporting with the export config's
    ``overrides``; ``validated_by``: ``run`` is a final fit and this is the run it was chosen on (or those
    runs, seeds of one recipe). Returns the folder. Nothing is written to ``zoo/name`` unless the int8 gate
    passes."""
    before = [validated_by] if isinstance(validated_by, (str, Path)) else list(validated_by or ())
    source = last_checkpoint(run) if before else best_checkpoint(run)
    validations = [read_validation(Path(folder), data) for folder in before]
    with tempfile.TemporaryDirectory(prefix="zoo-") as scratch:
        work = Path(scratch)
        slim = slim_checkpoint(source, work / "model.ckpt", STORED_DTYPE)
        checkpoint = read_checkpoint(slim)
        with_pose = has_trained_pose_net(checkpoint["hyper_parameters"])
        report = run_export(export_config(slim, work / "export", data, with_pose, list(overrides)))
        if not (report.get("gate") or {}).get("passed"):
            raise RuntimeError(f"{source}: the int8 model failed the export gate; nothing written to the zoo")
        for folder, validation in zip(before, validations):
            if validation.faces not in (None, report["faces"]):
                raise ValueError(
                    f"{folder}: scored {validation.faces} faces but data={data} has {report['faces']}: "
                    "quote a report on the same validation faces"
                )
        folder = zoo / name
        folder.mkdir(parents=True, exist_ok=True)
        for path in (slim, work / "export" / FP32_NAME, work / "export" / INT8_NAME):
            shutil.copyfile(path, folder / path.name)
        report["checkpoint"] = f"pretrained/{name}/model.ckpt"
        atomic_write_text(
            folder / "MODEL_CARD.md",
            render_card(name, run, checkpoint, report, data, model_cost(slim), validations, overrides),
        )
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a training run folder (metrics.json, .hydra/, checkpoints/)")
    parser.add_argument("--name", required=True, help="the zoo folder's name, e.g. pfld-0.25x-68")
    parser.add_argument(
        "--data", default="shared", help="data config of the validation faces (default shared)"
    )
    parser.add_argument("--zoo", type=Path, default=ZOO, help=f"zoo folder (default {ZOO})")
    parser.add_argument(
        "--validated-by",
        type=Path,
        action="append",
        default=None,
        help=(
            "RUN is a final fit; this is the run its recipe and epochs were chosen on (its folder, or an "
            "evaluate.py report of its model): its AFW figures are quoted. Repeat for several seeds of it: "
            "each is quoted, with their mean and standard deviation"
        ),
    )
    parser.add_argument(
        "overrides", nargs="*", help="settings of conf/export.yaml for the export, e.g. latency.runs=50"
    )
    args = parser.parse_intermixed_args(argv)
    try:
        folder = make_zoo_entry(args.run, args.name, args.data, args.zoo, args.overrides, args.validated_by)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KiB" for p in sorted(folder.iterdir()))
    print(f"wrote {folder}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
