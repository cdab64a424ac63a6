"""Landmarks and head pose on photos and videos: `python predict.py photo.jpg --model <ckpt or onnx>`.

See `pfld/cli/predict.py` for the options (`python predict.py --help`).
"""

import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pfld.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
