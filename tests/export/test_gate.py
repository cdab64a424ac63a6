"""export.gate: the int8 accuracy gate and its advice."""

import math

import pytest

from export.gate import accuracy_gate, quantization_advice


def test_gate_allows_a_relative_margin() -> None:
    assert accuracy_gate(0.050, 0.0515, 0.03).passed  # +3.0 %
    assert not accuracy_gate(0.050, 0.0516, 0.03).passed  # +3.2 %
    assert accuracy_gate(0.050, 0.049, 0.0).passed  # int8 better
    result = accuracy_gate(0.050, 0.049, -0.5)
    assert not result.passed and result.relative_change == pytest.approx(-0.02)


def test_nan_never_passes_and_fp32_must_be_positive() -> None:
    assert not accuracy_gate(0.05, math.nan).passed
    with pytest.raises(ValueError, match="positive"):
        accuracy_gate(0.0, 0.05)


def test_advice_follows_the_settings() -> None:
    advice = quantization_advice(
        {"per_channel": False, "keep_float": [], "calibration_images": 256, "method": "minmax"}
    )
    text = "\n".join(advice)
    assert "quantize.per_channel=true" in advice[0]
    assert "quantize.keep_float=[first_conv,last_fc]" in text
    assert "quantize.calibration_images=512" in text
    assert "quantize.method=percentile" in text and "quantize.method=minmax" not in text
    done = quantization_advice(
        {
            "per_channel": True,
            "keep_float": ["first_conv", "last_fc"],
            "calibration_images": 1024,
            "method": "entropy",
        }
    )
    assert not any("per_channel" in item or "keep_float" in item for item in done)
    assert any("2048" in item for item in done)
    assert "quantize.method=percentile or quantize.method=minmax" in done[-1]
