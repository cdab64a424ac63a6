"""`python -m export.zoo RUN --name NAME`: a training run -> a model-zoo folder ``pretrained/NAME/``.

Writes ``model.ckpt`` (the run's best checkpoint without optimiser state), ``model.onnx`` and
``model_int8.onnx`` (the export command on the slim checkpoint, with the pose output when the run trained
its pose net; the int8 gate must pass) and ``MODEL_CARD.md`` (the data, the exact commands, the scores
per face class, pose MAE, sizes, latencies and the data's licence), all generated:

    python -m export.zoo logs/zoo/pfld-0.25x-68 --name pfld-0.25x-68 --data shared
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf, open_dict

from export.command import FP32_NAME, INT8_NAME, run_export
from export.onnx_export import LandmarksAndPose
from export.report import model_table, pose_table
from pfld.inference.checkpoint import has_trained_pose_net, load_checkpoint, read_checkpoint
from pfld.inference.zoo import ZOO, slim_checkpoint
from pfld.io.atomic import atomic_write_text
from pfld.models.complexity import count_macs, count_parameters
from pfld.teacher.pseudo_label import MANIFEST_FILE, pseudo_label_command

ROOT = Path(__file__).resolve().parents[1]
#: The zoo's weights are stored rounded to float16 (half the checkpoint; the zoo stays under 20 MB); the
#: ONNX files are exported from the rounded weights, so every file of a folder is the same model.
STORED_DTYPE = torch.float16
GROUPS = ("all", "frontal", "profile", "head_up", "head_down")
#: Where each prepared data folder's faces come from and on what terms (../shared/data/README.md).
SOURCES = {
    "shared300w": "300W (Sagonas et al.; Helen and AFW photos): research use only",
    "ytf68": (
        "frames of the YouTube Faces data set with 68-point annotations from Udacity's P1_Facial_Keypoints "
        "repository (MIT); the frames are YouTube Faces', for non-commercial research"
    ),
    "mtfl5": "MTFL (Zhang et al., CUHK; LFW and web photos): research use only",
}
#: How each prepared data folder is made from ../shared/data (the card's first commands).
PREPARE = {
    "shared300w": "bash scripts/prepare_shared.sh",
    "ytf68": "bash scripts/prepare_shared.sh",
    "mtfl5": "python -m data mtfl --root ../shared/data/mtfl5",
}


@dataclass(frozen=True)
class TrainFolder:
    """One training folder of a run as the card names it (``data/...``), where it is, and the
    ``pseudo_labels.json`` manifest when a teacher labelled it."""

    name: str
    path: Path
    manifest: dict[str, Any] | None = None

    @property
    def source(self) -> str:
        """The prepared folder its faces come from (``mtfl5`` for a pseudo-labelled MTFL split)."""
        if self.manifest is None:
            return self.name.split("/")[1] if self.name.startswith("data/") else self.name
        split = Path(self.manifest["split"])
        return split.parent.name if split.name in ("train", "test", "val") else split.name


def train_folders(run: Path) -> list[TrainFolder]:
    """The run's training folders (its ``.hydra/config.yaml``), with their pseudo-label manifests."""
    config = OmegaConf.load(run / ".hydra" / "config.yaml")
    splits = OmegaConf.to_container(config.data.train, resolve=False)
    data_dir = OmegaConf.select(config, "paths.data_dir", default=None, throw_on_resolution_failure=False)
    data_dir = Path(str(data_dir)) if data_dir and Path(str(data_dir)).is_dir() else ROOT / "data"
    folders = []
    for index, split in enumerate(splits):
        raw = str(split.get("folder", split))
        # the folder as the run resolved it (${paths.teacher_dir}/... too), named under data/ when it is there
        folder = OmegaConf.select(config, f"data.train[{index}].folder", throw_on_resolution_failure=False)
        path = Path(str(folder)) if folder else Path(raw.replace("${paths.data_dir}", str(data_dir)))
        if path.resolve().is_relative_to(data_dir.resolve()):
            name = (Path("data") / path.resolve().relative_to(data_dir.resolve())).as_posix()
        else:
            name = raw.replace("${paths.data_dir}", "data")
        manifest = path / MANIFEST_FILE
        folders.append(
            TrainFolder(name, path, json.loads(manifest.read_text()) if manifest.is_file() else None)
        )
    return folders


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False)


def committed_version(path: Path, sha256: str) -> str | None:
    """The short hash of the newest commit in which ``path`` (under the repository) held the bytes whose
    SHA-256 is ``sha256``; None when no commit did (or there is no git)."""
    if not path.is_relative_to(ROOT):
        return None
    relative = path.relative_to(ROOT).as_posix()
    try:
        commits = _git("log", "--format=%h", "--", relative).stdout.decode().split()
        for commit in commits:
            blob = _git("show", f"{commit}:{relative}")
            if blob.returncode == 0 and hashlib.sha256(blob.stdout).hexdigest() == sha256:
                return commit
    except OSError:  # no git
        return None
    return None


def teacher_lines(folder: TrainFolder) -> tuple[str, list[str]]:
    """A pseudo-labelled folder's card bullet and the commands that remake it: each teacher file pinned
    to the commit that holds its exact bytes and restored from it (a zoo model may since have been
    replaced by this very student)."""
    manifest = folder.manifest or {}
    digests = manifest.get("checkpoint_sha256") or [None] * len(manifest["checkpoints"])
    named, restore, models = [], [], []
    for path, digest in zip(map(Path, manifest["checkpoints"]), digests, strict=True):
        shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        commit = committed_version(path, digest) if digest else None
        if commit:
            named.append(f"`{shown}` of commit {commit}")
            models.append(f"teacher-{path.parent.name}{path.suffix}")
            restore.append(f"git show {commit}:{shown} > {models[-1]}")
        else:
            why = f"sha256 {digest[:12]}, in no commit" if digest else "its version was not recorded"
            named.append(f"`{shown}` ({why})")
            models.append(shown)
    source = Path(manifest["split"])
    source = source.relative_to(ROOT).as_posix() if source.is_relative_to(ROOT) else str(source)
    teachers = named[0] if len(named) == 1 else f"an ensemble of {len(named)}: " + ", ".join(named)
    bullet = (
        f"- `{folder.name}`: {manifest['kept']:,} of the {manifest['faces']:,} faces of `{source}` "
        f"({manifest['dropped']} dropped: their annotated points lay on average more than "
        f"{manifest['threshold']:g} inter-ocular distances from the teacher's), the points they lack "
        f"pseudo-labelled by {teachers}."
    )
    return bullet, [*restore, pseudo_label_command(manifest, folder.path, models, ROOT)]


def best_checkpoint(run: Path) -> Path:
    """The run's best checkpoint, as its ``metrics.json`` names it (or the same file name under the
    run's ``checkpoints/``, when the run folder has moved)."""
    metrics = json.loads((run / "metrics.json").read_text())
    named = Path(metrics.get("best_checkpoint") or "")
    for candidate in (named, run / "checkpoints" / named.name):
        if named.name and candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{run}/metrics.json: its best_checkpoint {str(named)!r} is not there")


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


def train_command(run: Path) -> str:
    """The ``python train.py ...`` that made the run, from its ``.hydra/overrides.yaml`` (the settings that
    only pick threads, workers or folders are left out: they do not change the model)."""
    overrides = OmegaConf.load(run / ".hydra" / "overrides.yaml")
    local = ("cpu.threads=", "data.num_workers=", "hydra.", "logger=", "tags=")
    return "python train.py " + " ".join(str(o) for o in overrides if not str(o).startswith(local))


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
    name: str, run: Path, checkpoint: dict[str, Any], report: dict[str, Any], data: str, cost: dict[str, int]
) -> str:
    """``MODEL_CARD.md``: what the model is, how it was made, how well it does, and the licence."""
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
            f"{report['faces']} faces of `data={data}` (300W AFW: other photos and other people)."
        ),
        *(bullet for bullet, _ in taught),
        (
            f"- Trained {checkpoint.get('epoch', 0) + 1} epochs (best validation epoch; "
            f"{checkpoint.get('global_step', '?')} steps):"
        ),
        "",
        "```bash",
        *prepare,
        *(command for _, commands in taught for command in commands),
        train_command(run),
        f"python -m export.zoo <run folder> --name {name} --data {data}",
        "```",
        "",
        (
            "- This is the validation run itself, not a final fit on every face (AFW included): its figures are "
            "on faces it never trained on."
        ),
        (
            "- `model.ckpt`: weights and hyper-parameters (pose net included, no optimiser state); fine-tune with "
            f"`python train.py init_from=pretrained/{name}/model.ckpt ...` (other point counts too)."
        ),
        (
            f"- `model.onnx`, `model_int8.onnx`: `python -m export ckpt=pretrained/{name}/model.ckpt data={data} "
            f"with_pose={str(report['with_pose']).lower()}`; int8 target `{report['quantization']['target']}`."
        ),
        "",
        "## Accuracy",
        "",
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
    run: Path, name: str, data: str = "shared", zoo: Path = ZOO, overrides: list[str] = ()
) -> Path:
    """Write ``zoo/name/`` from training run ``run`` (see the module), exporting with the export config's
    ``overrides``; returns the folder. Nothing is written to ``zoo/name`` unless the int8 gate passes."""
    source = best_checkpoint(run)
    with tempfile.TemporaryDirectory(prefix="zoo-") as scratch:
        work = Path(scratch)
        slim = slim_checkpoint(source, work / "model.ckpt", STORED_DTYPE)
        checkpoint = read_checkpoint(slim)
        with_pose = has_trained_pose_net(checkpoint["hyper_parameters"])
        report = run_export(export_config(slim, work / "export", data, with_pose, list(overrides)))
        if not (report.get("gate") or {}).get("passed"):
            raise RuntimeError(f"{source}: the int8 model failed the export gate; nothing written to the zoo")
        folder = zoo / name
        folder.mkdir(parents=True, exist_ok=True)
        for path in (slim, work / "export" / FP32_NAME, work / "export" / INT8_NAME):
            shutil.copyfile(path, folder / path.name)
        report["checkpoint"] = f"pretrained/{name}/model.ckpt"
        atomic_write_text(
            folder / "MODEL_CARD.md", render_card(name, run, checkpoint, report, data, model_cost(slim))
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
        "overrides", nargs="*", help="settings of conf/export.yaml for the export, e.g. latency.runs=50"
    )
    args = parser.parse_intermixed_args(argv)
    try:
        folder = make_zoo_entry(args.run, args.name, args.data, args.zoo, args.overrides)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KiB" for p in sorted(folder.iterdir()))
    print(f"wrote {folder}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
