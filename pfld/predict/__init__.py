"""Landmarks and head pose on whole photos and videos: a face detector, the training crop policy, a
checkpoint or ONNX model, optional temporal smoothing, JSON and annotated pictures.

`python predict.py photo.jpg --model <checkpoint or onnx>`; in Python, `Predictor` (see `pipeline`).
"""

from pfld.inference.models import load_landmark_model
from pfld.predict.box_mapping import BoxMapping
from pfld.predict.detector import Detection, DlibHogDetector
from pfld.predict.pipeline import FacePrediction, Predictor

__all__ = ["BoxMapping", "Detection", "DlibHogDetector", "FacePrediction", "Predictor", "load_landmark_model"]
