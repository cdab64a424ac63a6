"""The int8 accuracy gate: is the quantised model's NME within a relative margin of the fp32 model's?"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: int8 NME against fp32 NME, relative change (0.02 = 2 % worse)."""

    passed: bool
    fp32_nme: float
    int8_nme: float
    relative_change: float
    max_relative_increase: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def accuracy_gate(fp32_nme: float, int8_nme: float, max_relative_increase: float = 0.03) -> GateResult:
    """Pass when ``int8_nme <= fp32_nme * (1 + max_relative_increase)``; a NaN NME never passes.

    A negative ``max_relative_increase`` demands that int8 be better than fp32 (useful to see the gate fail).
    """
    if not fp32_nme > 0:
        raise ValueError(f"the fp32 NME must be positive to compare against, got {fp32_nme}")
    change = int8_nme / fp32_nme - 1.0
    passed = not math.isnan(change) and change <= max_relative_increase
    return GateResult(passed, fp32_nme, int8_nme, change, max_relative_increase)


def quantization_advice(settings: Mapping[str, Any]) -> list[str]:
    """What to try when the gate fails, given the `quantize` settings used (most effective first)."""
    advice = []
    if not settings.get("per_channel", True):
        advice.append(
            "per-channel weight scales: quantize.per_channel=true (depthwise convolutions need them)"
        )
    keep = list(settings.get("keep_float", []))
    missing = [name for name in ("first_conv", "last_fc") if name not in keep]
    if missing:
        advice.append(
            f"keep the most sensitive layers in float: quantize.keep_float=[{','.join(keep + missing)}]"
        )
    count = int(settings.get("calibration_images", 0))
    advice.append(f"more calibration crops: quantize.calibration_images={max(2 * count, 512)} (now {count})")
    others = [m for m in ("percentile", "entropy", "minmax") if m != settings.get("method")]
    advice.append(
        "another way to calibrate activation ranges: " + " or ".join(f"quantize.method={m}" for m in others)
    )
    return advice
