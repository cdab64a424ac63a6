"""`python -m export CHECKPOINT [-o OUT.onnx]`: export a training checkpoint to ONNX."""

from __future__ import annotations

import argparse

from export.onnx_export import PARITY_BATCH, export_checkpoint, max_abs_difference
from pfld.inference import load_inference_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("checkpoint", help="a pfld training checkpoint (.ckpt)")
    parser.add_argument(
        "-o", "--output", help="ONNX file to write (default: <checkpoint stem>.onnx beside it)"
    )
    args = parser.parse_args(argv)
    path = export_checkpoint(args.checkpoint, args.output)
    model, _ = load_inference_model(args.checkpoint)
    difference = max_abs_difference(model, path)
    print(path)
    print(f"parity: max |onnxruntime - torch| = {difference:.3g} (crop units, batch of {PARITY_BATCH})")


if __name__ == "__main__":
    main()
