"""A checkpoint writer slowed down between writing and renaming, so that kills land inside writes."""

import time
from pathlib import Path
from typing import Any

from pfld.training.preemption import AtomicCheckpointIO, atomic_torch_save


class SlowAtomicCheckpointIO(AtomicCheckpointIO):
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        def slow_save(obj: Any, handle: Any) -> None:
            import torch

            torch.save(obj, handle)
            handle.flush()
            time.sleep(1.0)  # the file is half-way: written, not yet renamed

        atomic_torch_save(checkpoint, Path(path), save=slow_save)
