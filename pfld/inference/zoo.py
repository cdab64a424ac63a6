"""The model zoo: trained models committed under ``pretrained/<name>/``.

Each folder holds ``model.ckpt`` (weights, stored as float16, and hyper-parameters, the auxiliary pose
net included, no optimiser state: `slim_checkpoint`), ``model.onnx`` and ``model_int8.onnx`` (the export command's
files) and ``MODEL_CARD.md`` (data, commands, figures). ``python -m export.zoo`` writes a folder from a
training run. `zoo_model` finds a zoo file; ``predict.py`` uses the default one when no ``--model``
is given, and ``init_from=pretrained/<name>/model.ckpt`` fine-tunes from a zoo checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pfld.inference.checkpoint import MODEL_PREFIX, read_checkpoint
from pfld.io.atomic import atomic_save

#: The zoo folder of a source checkout (``pretrained/`` beside ``pfld/``).
ZOO = Path(__file__).resolve().parents[2] / "pretrained"
#: The model ``predict.py`` uses when it is given no ``--model``: small, int8, for a CPU.
DEFAULT_MODEL, DEFAULT_FILE = "pfld-0.25x-68", "model_int8.onnx"
#: What every zoo folder holds.
ZOO_FILES = ("model.ckpt", "model.onnx", "model_int8.onnx", "MODEL_CARD.md")
#: The parts of a Lightning checkpoint a zoo checkpoint keeps: enough for inference, export, evaluation
#: and ``init_from``; not for resuming (no optimiser, schedule, loops or callbacks).
KEPT_KEYS = (
    "state_dict",
    "hyper_parameters",
    "hparams_name",
    "epoch",
    "global_step",
    "pytorch-lightning_version",
)


def zoo_names(zoo: Path = ZOO) -> list[str]:
    """The zoo's models: its sub-folders that hold a ``model.ckpt``."""
    return sorted(p.parent.name for p in zoo.glob("*/model.ckpt")) if zoo.is_dir() else []


def zoo_model(name: str = DEFAULT_MODEL, file: str = DEFAULT_FILE, zoo: Path = ZOO) -> Path:
    """The path of ``file`` of zoo model ``name``; FileNotFoundError naming the path and what to do when
    it is not there (an installed package has no zoo: only a source checkout does)."""
    path = zoo / name / file
    if path.is_file():
        return path
    known = zoo_names(zoo)
    listed = (
        f"the zoo has: {', '.join(known)}"
        if known
        else f"there is no zoo at {zoo} (a source checkout has one)"
    )
    raise FileNotFoundError(
        f"{path}: no such zoo model file; {listed}; or pass a model of your own (--model)"
    )


#: State-dict entries that only the run itself reads (to resume): the annotation conventions' adapters
#: (`pfld.training.conventions`), left out of a slim checkpoint.
RUN_ONLY_PREFIXES = ("conventions.",)


def slim_checkpoint(source: str | Path, target: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``source``'s weights and hyper-parameters to ``target`` without its optimiser state,
    training progress (`KEPT_KEYS`) and run-only weights (`RUN_ONLY_PREFIXES`). ``dtype`` (e.g.
    ``torch.float16``) stores the model's floating-point weights rounded to it, half the file for
    float16; loading casts them back to the model's float32, so the rounded weights are what every later
    use (export, evaluation, ``init_from``) sees. None keeps them bit for bit."""
    checkpoint = read_checkpoint(source, "ckpt")
    slim = {key: checkpoint[key] for key in KEPT_KEYS if key in checkpoint}
    slim["state_dict"] = {
        key: _stored(value, dtype if key.startswith(MODEL_PREFIX) else None)
        for key, value in checkpoint["state_dict"].items()
        if not key.startswith(RUN_ONLY_PREFIXES)
    }
    atomic_save(target, lambda handle: torch.save(slim, handle))
    return Path(target)


def _stored(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    if dtype is not None and tensor.is_floating_point():
        return tensor.detach().to(dtype).clone()
    return tensor.detach().clone()
