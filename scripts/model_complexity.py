"""Print parameters, MACs and size of PFLD models as a markdown table (for the README).

Usage: python scripts/model_complexity.py [--input-size 112] [--widths 0.25 1.0] [--points 68 98]
"""

from __future__ import annotations

import argparse

from pfld.models import PFLD, PFLDBackbone, count_macs, count_parameters

BYTES_PER_FLOAT32 = 4


def complexity_rows(input_size: int, widths: list[float], points: list[int]) -> list[str]:
    """One markdown row per (width, K): inference/training parameters, inference MMACs, fp32 MB."""
    rows = []
    for width in widths:
        for num_points in points:
            train_model = PFLD(PFLDBackbone(width), num_points, input_size, auxiliary=True)
            infer_model = train_model.without_auxiliary()
            infer_params = count_parameters(infer_model)
            macs = count_macs(infer_model, input_size)
            size_mb = infer_params * BYTES_PER_FLOAT32 / 1e6
            rows.append(
                f"| {width:g} | {num_points} | {input_size} | {infer_params:,} | "
                f"{count_parameters(train_model):,} | {macs / 1e6:.1f} | {size_mb:.2f} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=112, help="input side in pixels")
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0], help="backbone widths")
    parser.add_argument("--points", type=int, nargs="+", default=[68, 98], help="numbers of landmarks K")
    args = parser.parse_args()
    print(
        "| width | K | input | params (inference) | params (training, + auxiliary) "
        "| MMACs (inference) | size (MB, fp32 parameters) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in complexity_rows(args.input_size, args.widths, args.points):
        print(row)


if __name__ == "__main__":
    main()
