"""The export report as Markdown: sizes, latency, accuracy of PyTorch vs fp32 vs int8, parity, gate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Rows of the model table, in order: key in the report's ``models``, label.
MODEL_LABELS: tuple[tuple[str, str], ...] = (
    ("pytorch", "PyTorch"),
    ("fp32", "ONNX fp32"),
    ("int8", "ONNX int8"),
    ("ncnn_fp32", "ncnn fp32"),
    ("ncnn_int8", "ncnn int8"),
    ("mnn_fp32", "MNN fp32"),
    ("mnn_wq8", "MNN 8-bit weights"),
    ("tflite_fp32", "LiteRT fp32"),
    ("tflite_int8", "LiteRT int8"),
)


def _latency(model: Mapping[str, Any], which: str) -> str:
    latency = model.get("latency", {}).get(which)
    return f"{latency['median_ms']:.2f} ms" if latency else "-"


def model_table(report: Mapping[str, Any]) -> str:
    """One row per model: file, size, NME, FR, AUC, median latency at batch 1 (1 thread, all threads)."""
    threshold = f"{report['failure_threshold']:g}"
    threads = report.get("threads_all", "all")
    lines = [
        (
            f"| model | file | size | NME | FR@{threshold} | AUC@{threshold} | latency, 1 thread | "
            f"latency, {threads} threads |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in MODEL_LABELS:
        model = report["models"].get(key)
        if model is None:
            continue
        if key == "int8" and report.get("quantization"):
            label += f" ({report['quantization']['target']})"
        size = f"{model['bytes'] / 1024:.0f} KiB" if "bytes" in model else "-"
        lines.append(
            f"| {label} | {model.get('file', '-')} | {size} | {model['nme']:.4f} | "
            f"{model['failure_rate']:.2%} | {model['auc']:.4f} | {_latency(model, 'one')} | "
            f"{_latency(model, 'all')} |"
        )
    return "\n".join(lines)


def pose_table(report: Mapping[str, Any]) -> str:
    """Yaw, pitch and roll MAE (degrees) of each model that predicts the pose."""
    lines = ["| model | faces | yaw | pitch | roll |", "|---|---:|---:|---:|---:|"]
    for key, label in MODEL_LABELS:
        pose = report["models"].get(key, {}).get("pose_mae_deg")
        if pose:
            lines.append(
                f"| {label} | {int(pose['faces'])} | {pose['yaw']:.2f} | {pose['pitch']:.2f} | {pose['roll']:.2f} |"
            )
    return "\n".join(lines)


def render_report(report: Mapping[str, Any]) -> str:
    """`report.md`: what was exported, the model table, the parity check, the int8 settings, the gate."""
    parity, quant = report["parity"], report.get("quantization")
    lines = [
        f"# Export of `{report['checkpoint']}`",
        "",
        (
            f"Scored on {report['faces']} validation faces ({report['normalization']} NME); latency: batch "
            f"1, median of {report['latency_runs']} runs (in fresh sessions, after warm-up), onnxruntime "
            f"CPU, on {report['machine']}."
        ),
        "",
        model_table(report),
        "",
        f"**Parity** (fp32 ONNX vs PyTorch, {parity['images']} real validation crops): max |difference| "
        f"{parity['landmarks_max_abs']:.2g} crop units (limit {parity['atol']:g})"
        + (
            f", pose {parity['pose_max_abs_deg']:.2g} degrees"
            if parity.get("pose_max_abs_deg") is not None
            else ""
        )
        + ".",
    ]
    runtimes = [
        (label, report["models"][key]["parity"])
        for key, label in MODEL_LABELS
        if "parity" in report["models"].get(key, {})
    ]
    if runtimes:
        lines += [
            "",
            "**Other runtimes** (their own Python bindings vs PyTorch, the same crops, max / mean |difference|; "
            "latency with 1 thread, their own timing): "
            + "; ".join(f"{label} {p['max_abs']:.2g} / {p['mean_abs']:.2g}" for label, p in runtimes)
            + ".",
        ]
    for fmt, why in (report.get("formats_failed") or {}).items():
        lines += ["", f"**{fmt} not written**: {why}"]
    if report.get("with_pose") and report["models"]["pytorch"].get("pose_mae_deg"):
        lines += ["", "**Pose output**, mean absolute error in degrees:", "", pose_table(report)]
    if quant:
        kept = ", ".join(quant["keep_float"]) or "none"
        lines += [
            "",
            (
                f"**int8**: static QDQ, target `{quant['target']}`, "
                f"{'per-channel' if quant['per_channel'] else 'per-tensor'} weights, `{quant['method']}` "
                f"calibration on {quant['calibration_images']} {quant['calibration_split']} crops; kept in "
                f"float: {kept}."
            ),
        ]
        on_arm = any(word in report["machine"].lower() for word in ("arm", "aarch64"))
        if quant["target"] == "arm" and not on_arm:
            lines.append(
                "The `arm` model's latency here is not its phone latency: x86 CPUs run signed int8 activations "
                "through slower kernels (`target=x86` builds the model for this machine)."
            )
    gate = report.get("gate")
    if gate:
        lines += ["", _gate_line("**Gate**: int8 NME", gate, "fp32")]
        if not gate["passed"]:
            lines += ["", "Try:"] + [f"- {item}" for item in gate["advice"]]
    for label, runtime in runtime_gates(report):
        lines += ["", _gate_line(f"**Gate, {label}**: NME", runtime, "ONNX fp32")]
    return "\n".join(lines) + "\n"


def _gate_line(title: str, gate: Mapping[str, Any], reference: str) -> str:
    """One `accuracy_gate` result as a sentence: the 8-bit NME against ``reference``'s, the change, the
    limit and the verdict."""
    verdict = "passed" if gate["passed"] else "**FAILED**"
    return (
        f"{title} {gate['int8_nme']:.4f} vs {reference} {gate['fp32_nme']:.4f}: "
        f"{gate['relative_change']:+.2%} (limit {gate['max_relative_increase']:+.2%}): {verdict}."
    )


def runtime_gates(report: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, gate) of every other runtime's 8-bit model (`export.runtimes`), in table order."""
    models = report["models"]
    return [(label, models[key]["gate"]) for key, label in MODEL_LABELS if "gate" in models.get(key, {})]
