"""A `PFLDModule`'s hyper-parameters as plain values, with the ``_target_`` paths of moved code updated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: ``_target_`` prefixes that moved when `pfld` was arranged by job (old -> new). Checkpoints written
#: before keep the old ones in their hyper-parameters; of those, the schedule's is instantiated from them.
MOVED_TARGETS: dict[str, str] = {"pfld.schedules.": "pfld.training.schedules."}


def plain_config(config: Mapping[str, Any] | DictConfig | None) -> dict[str, Any] | None:
    """A plain dict of ``config``, its ``_target_`` entries (at any depth) renamed by `MOVED_TARGETS`."""
    if config is None:
        return None
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)  # type: ignore[assignment]
    return _current_targets(dict(config))  # type: ignore[arg-type]


def _current_targets(node: Any) -> Any:
    if isinstance(node, Mapping):
        out = {key: _current_targets(value) for key, value in node.items()}
        target = out.get("_target_")
        if isinstance(target, str):
            for old, new in MOVED_TARGETS.items():
                if target.startswith(old):
                    out["_target_"] = new + target.removeprefix(old)
        return out
    if isinstance(node, list):
        return [_current_targets(value) for value in node]
    return node
