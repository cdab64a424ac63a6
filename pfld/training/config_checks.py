"""Checks of a training config that run before any work (data preparation, model, Trainer) starts.

`check_train_config` gathers every problem it finds and raises one `ConfigError` that lists them, each
naming its key and saying what to do. Hydra's struct mode already refuses an unknown top-level key on
the command line (``foo=1``); here the keys inside the groups that reach `hydra.utils.instantiate` are
checked against the signature of their ``_target_``, so that a typo inside ``model:`` or
``optimizer:`` is named instead of surfacing as a TypeError minutes later, or never.
"""

from __future__ import annotations

import difflib
import inspect
import math
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from pfld.data.normalize import CHANNELS
from pfld.inference.checkpoint import read_checkpoint
from pfld.models.pfld import MIN_INPUT_SIZE

#: Config groups built with `instantiate` (their ``_target_`` entries, at any depth, are checked).
INSTANTIATED_GROUPS: tuple[str, ...] = (
    "model",
    "loss",
    "optimizer",
    "scheduler",
    "data",
    "trainer",
    "callbacks",
    "logger",
)
#: Keys `instantiate` reads itself.
HYDRA_KEYS: frozenset[str] = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})


class ConfigError(ValueError):
    """A training config that cannot work; the message lists every problem found."""


def check_train_config(cfg: DictConfig) -> None:
    """Raise `ConfigError` listing what is wrong with ``cfg`` (conf/train.yaml composed), else return."""
    problems = unknown_keys(cfg)
    problems += model_problems(cfg)
    problems += checkpoint_problems(cfg)
    problems += cpu_problems(cfg)
    problems += ema_problems(cfg)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(
            f"the training config has {len(problems)} problem(s); nothing was started:\n{listed}"
        )


def unknown_keys(cfg: DictConfig) -> list[str]:
    """One message per key of a ``_target_`` entry that its callable does not take (or per target that
    cannot be imported), in `INSTANTIATED_GROUPS`."""
    problems: list[str] = []
    for group in INSTANTIATED_GROUPS:
        if cfg.get(group) is not None:
            _walk(OmegaConf.to_container(cfg[group], resolve=False), group, problems)
    return problems


def ema_problems(cfg: DictConfig) -> list[str]:
    """``ema``: null (off) or a decay strictly between 0 and 1 (`pfld.training.ema.EMA`)."""
    decay = cfg.get("ema")
    if decay is None:
        return []
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay < 1.0:
        return [f"ema: {decay!r} is not a decay; give one in (0, 1), e.g. ema=0.999, or ema=null (off)"]
    return []


CPU_KEYS: tuple[str, ...] = ("threads", "adapt_every_s")


def cpu_problems(cfg: DictConfig) -> list[str]:
    """The ``cpu`` section (see `pfld.cpu_budget`): known keys, ``threads`` auto or >= 1, a positive
    ``adapt_every_s`` or null; ``data.num_workers`` auto or >= 0."""
    problems = []
    cpu = cfg.get("cpu") or {}
    for key in cpu:
        if key not in CPU_KEYS:
            close = difflib.get_close_matches(str(key), CPU_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"cpu.{key}: unknown key; {hint}it takes {', '.join(CPU_KEYS)}")
    threads = cpu.get("threads", "auto")
    if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        problems.append(f"cpu.threads must be 'auto' or an integer >= 1, got {threads!r}")
    every = cpu.get("adapt_every_s")
    if every is not None and not _positive_number(every):
        problems.append(f"cpu.adapt_every_s must be a positive number of seconds or null, got {every!r}")
    workers = (cfg.get("data") or {}).get("num_workers", "auto")
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        problems.append(f"data.num_workers must be 'auto' or an integer >= 0, got {workers!r}")
    return problems


def _walk(node: Any, path: str, problems: list[str]) -> None:
    if isinstance(node, list):
        for index, item in enumerate(node):
            _walk(item, f"{path}[{index}]", problems)
        return
    if not isinstance(node, dict):
        return
    if "_target_" in node:
        problems += _target_problems(node, path)
    for key, value in node.items():
        _walk(value, f"{path}.{key}", problems)


def _target_problems(node: dict[str, Any], path: str) -> list[str]:
    target = str(node["_target_"])
    try:
        parameters = inspect.signature(get_object(target)).parameters
    except (ImportError, AttributeError, ValueError) as error:
        return [f"{path}._target_: cannot import {target!r} ({error}); check its spelling"]
    except TypeError:  # a callable without a signature (some builtins): nothing to check against
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []  # takes any keyword
    accepted = [name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    problems = []
    for key in node:
        if key in HYDRA_KEYS or key in accepted:
            continue
        close = difflib.get_close_matches(str(key), accepted, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append(
            f"{path}.{key}: unknown key for {target}; {hint}it takes {', '.join(accepted) or 'no keys'}"
        )
    return problems


def model_problems(cfg: DictConfig) -> list[str]:
    """A backbone width that is not a positive number; an input size the model cannot take; input
    channels other than 3 (RGB) or 1 (grey); a model whose point count or input size differs from the
    data's."""
    problems = []
    backbone = cfg.model.get("backbone") or {}
    width = backbone.get("width")
    if "width" in backbone and not _positive_number(width):
        problems.append(f"model.backbone.width must be a finite number > 0 (e.g. 0.25 or 1.0), got {width!r}")
    for key in ("data.input_size", "model.input_size"):
        size = OmegaConf.select(cfg, key)
        if size is not None and not _valid_input_size(size):
            problems.append(
                f"{key} must be an int, a multiple of 16 and >= {MIN_INPUT_SIZE} (e.g. 112), got {size!r}"
            )
    channels = cfg.data.get("channels")
    if channels is not None and channels not in CHANNELS:
        problems.append(f"data.channels must be 3 (RGB) or 1 (grey), got {channels!r}")
    for name in ("input_size", "num_points"):
        model_value, data_value = cfg.model.get(name), cfg.data.get(name)
        if model_value is not None and data_value is not None and model_value != data_value:
            problems.append(
                f"model.{name} is {model_value} but data.{name} is {data_value}; leave model.{name} "
                f"at its default ${{data.{name}}}"
            )
    return problems


def checkpoint_problems(cfg: DictConfig) -> list[str]:
    """``ckpt_path`` (resume) and ``init_from`` (fine-tune): not both, each an existing pfld checkpoint;
    a resumed checkpoint must have the config's point count, input size and backbone, and ``ema`` when
    it was written with one."""
    resume, init = cfg.get("ckpt_path"), cfg.get("init_from")
    if resume and init:
        both = f"ckpt_path ({resume}) resumes a run and init_from ({init}) starts a new one from its weights"
        return [f"{both}: set only one"]
    key, path = ("ckpt_path", resume) if resume else ("init_from", init)
    if not path:
        return []
    try:
        checkpoint = read_checkpoint(path, key)
    except (OSError, ValueError) as error:
        return [str(error)]
    if key == "init_from":
        return []  # another point count, size or width is what init_from is for
    problems = _resume_mismatches(checkpoint["hyper_parameters"], cfg, path)
    if "current_model_state" in checkpoint and cfg.get("ema") is None:
        problems.append(
            f"ckpt_path={path} was written with ema (a moving average of the weights): resume with the "
            "run's ema=<decay> too (ema=0.999 unless it set another), or the average would replace the "
            "weights being trained"
        )
    return problems


def _resume_mismatches(hparams: dict[str, Any], cfg: DictConfig, path: str) -> list[str]:
    saved_model, saved_data = hparams["model"], hparams.get("data") or {}
    problems = []
    saved_points, points = saved_data.get("num_points", saved_model.get("num_points")), cfg.data.num_points
    if saved_points != points:
        problems.append(
            f"ckpt_path={path} has {saved_points} points ({saved_data.get('scheme', '?')}) but the config has "
            f"{points}: a run resumes only with its own model; to start a new run from its weights, with "
            f"the output layer re-initialised for {points} points, use init_from={path} instead"
        )
    saved_size = saved_data.get("input_size", saved_model.get("input_size"))
    if saved_size != cfg.data.input_size:
        problems.append(
            f"ckpt_path={path} was trained at input_size {saved_size} but data.input_size is "
            f"{cfg.data.input_size}: set data.input_size={saved_size} to resume, or use init_from={path}"
        )
    backbone = OmegaConf.to_container(cfg.model.get("backbone") or {}, resolve=True)
    saved_backbone = saved_model.get("backbone")
    if isinstance(saved_backbone, dict) and isinstance(backbone, dict) and "in_channels" in backbone:
        saved_backbone = {"in_channels": 3, **saved_backbone}  # checkpoints from before it: RGB
    if saved_backbone != backbone:
        problems.append(
            f"ckpt_path={path} has the backbone {saved_model.get('backbone')} but the config has {backbone}: "
            f"choose the same model to resume, or use init_from={path} to start from its matching weights"
        )
    return problems


def _positive_number(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _valid_input_size(value: Any) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and value % 16 == 0 and value >= MIN_INPUT_SIZE
    )
