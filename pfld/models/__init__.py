"""PFLD networks: the native backbone, a timm adapter, the multi-scale head, the auxiliary pose net."""

from pfld.models.auxiliary import AuxiliaryPoseNet
from pfld.models.backbone import PFLDBackbone
from pfld.models.complexity import count_macs, count_parameters
from pfld.models.head import MultiScaleHead
from pfld.models.pfld import PFLD, TrainingOutputs
from pfld.models.timm_backbone import TimmBackbone

__all__ = [
    "PFLD",
    "AuxiliaryPoseNet",
    "MultiScaleHead",
    "PFLDBackbone",
    "TimmBackbone",
    "TrainingOutputs",
    "count_macs",
    "count_parameters",
]
