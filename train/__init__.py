"""Training: datasets (DPED layout, paired folders, built-in sample photos), losses and loops."""
from .dped import DPEDTrainConfig, TrainingDiverged, train_dped

__all__ = ["DPEDTrainConfig", "TrainingDiverged", "train_dped"]
