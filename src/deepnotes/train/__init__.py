"""Training: the Trainer loop, checkpoints, the run folder, history and plots."""

from deepnotes.train.trainer import Trainer, TrainingInterrupted, evaluate

__all__ = ["Trainer", "TrainingInterrupted", "evaluate"]
