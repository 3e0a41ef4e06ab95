"""Training: the Trainer loop, checkpoints, the run folder, history and plots."""

from deepnotes.train.evaluate import evaluate
from deepnotes.train.trainer import Trainer, TrainingInterrupted

__all__ = ["Trainer", "TrainingInterrupted", "evaluate"]
