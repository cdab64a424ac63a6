"""The cost side of the input-size x width question (docs/ablations.md, question 3), and of exporting
the pose net (question 1): inference MMACs, parameters, ONNX size and onnxruntime batch-1 latency with
1 thread, fp32 and int8 (arm: int8 activations and weights), for untrained PFLD models (the cost does
not depend on the weights).

    python scripts/cost_grid.py --sizes 96 112 128 --widths 0.25 0.5 1.0 --json cost.json

Latency is measured one model at a time; run it on an idle machine (other processes change it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export.latency import machine_description, measure_latency
from export.onnx_export import LandmarksAndPose, _torch_export
from export.quantize import quantize_int8
from pfld.models import PFLD, PFLDBackbone, count_macs, count_parameters


def measure(
    size: int, width: float, with_pose: bool, runs: int, folder: Path, pose_from: str = "stride4"
) -> dict[str, float]:
    torch.manual_seed(0)
    model = PFLD(PFLDBackbone(width), 68, size, auxiliary=with_pose, pose_from=pose_from).eval()
    net: nn.Module = LandmarksAndPose(model) if with_pose else model
    outputs = ["landmarks", "pose"] if with_pose else ["landmarks"]
    name = f"s{size}_w{width:g}{'_pose_' + pose_from if with_pose else ''}"
    fp32 = folder / f"{name}.onnx"
    int8 = folder / f"{name}_int8.onnx"
    _torch_export(net, torch.zeros(1, 3, size, size), fp32, 18, outputs)
    rng = np.random.default_rng(0)
    calibration = [rng.standard_normal((8, 3, size, size)).astype(np.float32) for _ in range(4)]
    quantize_int8(fp32, int8, calibration)
    image = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    row = {
        "input": size,
        "width": width,
        "with_pose": with_pose,
        "pose_from": pose_from if with_pose else None,
        "mmacs": count_macs(net, size) / 1e6,  # the exported graph: with the pose net when it is an output
        "params": count_parameters(model),
        "fp32_kb": fp32.stat().st_size / 1024,
        "int8_kb": int8.stat().st_size / 1024,
    }
    for label, path in (("fp32", fp32), ("int8", int8)):
        row[f"{label}_ms"] = measure_latency(path, image, threads=1, runs=runs, warmup=20, sessions=2)[
            "median_ms"
        ]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 112, 128])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument(
        "--pose",
        action="store_true",
        help="also each model with the pose output (from stride 4 and from the head)",
    )
    parser.add_argument("--runs", type=int, default=200, help="timed calls per session")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"machine: {machine_description()}")
    print("| input | width | pose out | MMACs | params | fp32 KB | int8 KB | fp32 ms | int8 ms |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="pfld-cost-") as tmp:
        for size in args.sizes:
            for width in args.widths:
                variants = [(False, "stride4")] + ([(True, "stride4"), (True, "head")] if args.pose else [])
                for with_pose, pose_from in variants:
                    r = measure(size, width, with_pose, args.runs, Path(tmp), pose_from)
                    rows.append(r)
                    print(
                        f"| {size} | {width:g} | {pose_from if with_pose else 'no'} | {r['mmacs']:.1f} | "
                        f"{r['params']:,} | {r['fp32_kb']:.0f} | {r['int8_kb']:.0f} | {r['fp32_ms']:.3f} | "
                        f"{r['int8_ms']:.3f} |",
                        flush=True,
                    )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
