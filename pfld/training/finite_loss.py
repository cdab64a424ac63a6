"""Stop a run whose training loss is NaN or infinite, naming the batch, before it trains on garbage."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class NonFiniteLossError(FloatingPointError):
    """The training loss of a batch is NaN or infinite; the message names the batch and its faces."""


def non_finite_inputs(batch: dict[str, torch.Tensor]) -> list[int]:
    """Positions in the batch of the faces whose image or target landmarks hold NaN or infinity."""
    bad = torch.zeros(len(batch["image"]), dtype=torch.bool)
    for key in ("image", "landmarks"):
        values = batch.get(key)
        if values is not None:
            bad |= ~torch.isfinite(values.detach().cpu()).flatten(1).all(dim=1)
    return torch.nonzero(bad).flatten().tolist()


def non_finite_loss_message(
    loss: float,
    epoch: int,
    batch_index: int,
    global_step: int,
    sources: Sequence[str],
    bad_inputs: Sequence[int] = (),
    shown: int = 5,
) -> str:
    """What went wrong, where, and what to try. ``sources``: the batch's faces (annotation file and line,
    or image); empty when unknown; ``bad_inputs``: positions of faces with non-finite inputs."""
    where = f"epoch {epoch}, batch {batch_index} (global step {global_step})"
    text = f"the training loss is {loss} at {where}; the run stops before this batch updates the weights."
    if bad_inputs:
        named = [sources[i] if i < len(sources) else f"face {i} of the batch" for i in bad_inputs]
        text += f" Faces with NaN or infinite inputs: {_listed(named, shown)}: fix or drop them."
    elif sources:
        text += f" Its {len(sources)} faces: {_listed(sources, shown)}."
    else:
        text += " The faces of the batch are not known (the dataset gives no index)."
    if not bad_inputs:
        text += (
            " The inputs are finite, so training diverged: lower optimizer.lr, set "
            "trainer.gradient_clip_val (e.g. 1.0), or resume from an earlier checkpoints/last.ckpt."
        )
    return text


def _listed(names: Sequence[str], shown: int) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
