"""`python -m export ckpt=<checkpoint> out=<folder>`: fp32 and int8 ONNX models, checked, with a report.

Configured by `conf/export.yaml` (any key can be overridden, e.g. `quantize.target=x86`,
`formats=[onnx,ncnn,mnn,tflite]`). Exits with status 1 when the int8 model's NME (or another runtime's
8-bit model's) is worse than the fp32 model's by more than the gate allows, or when a requested format
could not be written (the others are; in a multirun, `-m`, the run is marked in the sweep's summary.md
instead).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("PFLD_ROOT", str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from export.command import run_export

    report = run_export(cfg)
    failed = report.get("formats_failed") or {}
    for fmt, why in failed.items():
        print(f"format {fmt} was not written: {why}", file=sys.stderr)
    gate = report.get("gate")
    if gate and not gate["passed"]:
        print(
            f"int8 NME is {gate['relative_change']:+.2%} of fp32's, beyond the gate's "
            f"{gate['max_relative_increase']:+.2%} (gate.max_relative_nme_increase); try:\n"
            + "\n".join(f"  - {item}" for item in gate["advice"]),
            file=sys.stderr,
        )
        if HydraConfig.get().mode != RunMode.MULTIRUN:  # a sweep goes on to its other settings
            sys.exit(1)
    from export.report import runtime_gates

    beyond = [(label, g) for label, g in runtime_gates(report) if not g["passed"]]
    for label, runtime in beyond:
        print(
            f"{label}: NME {runtime['relative_change']:+.2%} of ONNX fp32's, beyond the gate's "
            f"{runtime['max_relative_increase']:+.2%}; the file is kept, its row in report.md says so",
            file=sys.stderr,
        )
    if (failed or beyond) and HydraConfig.get().mode != RunMode.MULTIRUN:
        sys.exit(1)


if __name__ == "__main__":
    main()
