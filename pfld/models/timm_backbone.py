"""Any timm model as a PFLD backbone, through `features_only` at strides 4 and 8."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

AUXILIARY_STRIDE = 4
S1_STRIDE = 8


def _import_timm() -> Any:
    try:
        import timm
    except Exception as exc:  # timm missing, or its torchvision import broken
        raise ImportError(
            f"TimmBackbone needs timm, and `import timm` failed ({type(exc).__name__}: {exc}). "
            "Install it with `pip install 'pfld[timm]'`. timm imports torchvision, which must be the "
            f"build that matches the installed torch ({torch.__version__}); a CUDA torchvision next to "
            "a CPU torch (or the reverse) fails to import."
        ) from exc
    return timm


def _last_index_with_reduction(reductions: list[int], stride: int, name: str) -> int:
    matches = [i for i, r in enumerate(reductions) if r == stride]
    if not matches:
        raise ValueError(
            f"timm model {name!r} has no feature level at stride {stride}; its strides are {reductions}"
        )
    return matches[-1]


class TimmBackbone(nn.Module):
    """A timm model's stride-4 and stride-8 feature levels, with `PFLDBackbone`'s contract.

    Where several levels share a stride, the deepest is used. timm's pretrained weights expect its
    own input normalisation (usually ImageNet mean and std).

    Args:
        name: a timm model name with `features_only` support.
        pretrained: load timm's pretrained weights (downloads them unless cached).
        in_channels: channels of the input (3: RGB, 1: grey), timm's ``in_chans`` (timm adapts
            pretrained first-layer weights to it).
        **timm_kwargs: passed to `timm.create_model` (not `features_only` nor `out_indices`).

    Attributes:
        in_channels: channels of the input.
        auxiliary_channels: channels of the stride-4 features.
        out_channels: channels of the stride-8 features.
    """

    def __init__(
        self,
        name: str = "mobilenetv3_large_100",
        pretrained: bool = False,
        in_channels: int = 3,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        for key in ("features_only", "out_indices", "pretrained", "in_chans"):
            if key in timm_kwargs:
                hint = " (it is in_channels)" if key == "in_chans" else ""
                raise ValueError(f"TimmBackbone sets `{key}` itself{hint}; do not pass it in timm_kwargs")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be an int >= 1 (3: RGB, 1: grey), got {in_channels!r}")
        timm_kwargs = {**timm_kwargs, "in_chans": in_channels}
        timm = _import_timm()
        probe = timm.create_model(name, features_only=True, pretrained=False, **timm_kwargs)
        reductions = list(probe.feature_info.reduction())
        del probe
        indices = (
            _last_index_with_reduction(reductions, AUXILIARY_STRIDE, name),
            _last_index_with_reduction(reductions, S1_STRIDE, name),
        )
        self.model = timm.create_model(
            name, features_only=True, pretrained=pretrained, out_indices=indices, **timm_kwargs
        )
        channels = list(self.model.feature_info.channels())
        if len(channels) != 2:
            raise ValueError(
                f"timm model {name!r} returned {len(channels)} feature levels for out_indices={indices}"
            )
        self.name = name
        self.in_channels: int = in_channels
        self.auxiliary_channels: int = int(channels[0])
        self.out_channels: int = int(channels[1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> (stride-4 features (B, C4, H/4, W/4), stride-8 features (B, C8, H/8, W/8))."""
        aux, s1 = self.model(x)
        return aux, s1
