"""Landmarks and head pose on whole photos and videos: a face detector, the training crop policy, a
checkpoint or ONNX model, optional temporal smoothing, JSON and annotated pictures.

`python predict.py photo.jpg --model <checkpoint or onnx>`; in Python, `Predictor` (see `pipeline`).
"""

from pfld.inference.models import load_landmark_model
from pfld.predict.blazeface import BlazeFaceDetector
from pfld.predict.box_mapping import BoxMapping
from pfld.predict.detector import DETECTORS, Detection, DlibHogDetector, create_detector
from pfld.predict.pipeline import FacePrediction, Predictor
from pfld.predict.tracking import FaceTracker

__all__ = [
    "DETECTORS",
    "BlazeFaceDetector",
    "BoxMapping",
    "Detection",
    "DlibHogDetector",
    "FacePrediction",
    "FaceTracker",
    "Predictor",
    "create_detector",
    "load_landmark_model",
]
