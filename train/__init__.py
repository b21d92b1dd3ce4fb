"""Training: datasets (DPED layout, paired folders, built-in sample photos), losses and loops."""
from .dped import DPEDTrainConfig, train_dped
from .loop import TrainingDiverged

__all__ = ["DPEDTrainConfig", "TrainingDiverged", "train_dped"]
