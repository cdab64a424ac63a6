"""``init_from``: start a new run from another checkpoint's weights, whatever its point count.

Fine-tuning 98-point WFLW weights into a 68-point model (or a 68-point model on other data) keeps every
tensor whose name and shape match and leaves the rest as freshly initialised: the head's final layer
when the point counts differ (`PFLDModule.initialize_from_data` has already set it to the new data's
mean face), the pose net when the checkpoint has none. Unlike ``ckpt_path`` (resume), the epoch, the
optimiser, the schedule and the callbacks start afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pfld.inference.checkpoint import model_state, read_checkpoint


@dataclass
class WarmStart:
    """What `load_matching` did: names of the target's tensors loaded or left fresh, with the shapes."""

    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # not in the checkpoint: left fresh
    unused: list[str] = field(default_factory=list)  # in the checkpoint only

    def summary(self, source: str) -> str:
        """A few lines for the console: counts, and every tensor that was not loaded."""
        lines = [f"init_from={source}: loaded {len(self.loaded)} tensors"]
        if self.reinitialised:
            shapes = ", ".join(
                f"{name} ({_shape(old)} in the checkpoint, {_shape(new)} here)"
                for name, (old, new) in self.reinitialised.items()
            )
            lines.append(f"re-initialised (shape differs): {shapes}")
        if self.missing:
            lines.append(f"re-initialised (not in the checkpoint): {_names(self.missing)}")
        if self.unused:
            lines.append(f"not used (not in this model): {_names(self.unused)}")
        return "\n  ".join(lines)


def load_matching(model: nn.Module, state: Mapping[str, torch.Tensor]) -> WarmStart:
    """Copy into ``model`` every tensor of ``state`` whose name and shape match; leave the others."""
    own = model.state_dict()
    result = WarmStart()
    matching = {}
    for name, tensor in own.items():
        if name not in state:
            result.missing.append(name)
        elif tuple(state[name].shape) != tuple(tensor.shape):
            result.reinitialised[name] = (tuple(state[name].shape), tuple(tensor.shape))
        else:
            matching[name] = state[name]
            result.loaded.append(name)
    result.unused = [name for name in state if name not in own]
    model.load_state_dict(matching, strict=False)
    return result


def warm_start(model: nn.Module, checkpoint_path: str | Path) -> WarmStart:
    """Load the matching weights of the `PFLD` model of a `PFLDModule` checkpoint (its loss
    state is the old data's and is left out) into ``model`` and print what was not loaded."""
    result = load_matching(model, model_state(read_checkpoint(checkpoint_path, "init_from")))
    if not result.loaded:
        raise ValueError(
            f"init_from={checkpoint_path}: no tensor matches this model by name and shape; is it a "
            "checkpoint of another architecture?"
        )
    print(result.summary(str(checkpoint_path)))
    return result


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _names(names: list[str], shown: int = 6) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
