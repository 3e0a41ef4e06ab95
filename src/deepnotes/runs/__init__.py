"""Orchestration: what a command does with the library below, one module a job.

- :mod:`~deepnotes.runs.config`: :class:`RunConfig`, config.json's fields, defaults and rules
- :mod:`~deepnotes.runs.build`: the data, splits, network and batches a config describes
- :mod:`~deepnotes.runs.session`: :func:`prepare` and :func:`fit`, used by every command that trains
- :mod:`~deepnotes.runs.training`: ``deepnotes train``: start a run, or resume one
- :mod:`~deepnotes.runs.folder`: a run folder's name, owner, lock, provenance and trained model
- :mod:`~deepnotes.runs.report`: metrics.json and the plots of a finished run
- :mod:`~deepnotes.runs.table`: ``deepnotes runs``: one row a run folder
- :mod:`~deepnotes.runs.compare`, :mod:`~deepnotes.runs.tune`, :mod:`~deepnotes.runs.finetune`,
  :mod:`~deepnotes.runs.error_analysis`: the workflows of ``compare-optimizers`` (its rows, a rule
  and its variants: :mod:`~deepnotes.runs.rules`), ``tune`` (needs Optuna, imported only there;
  its settings, checked without Optuna, are :mod:`~deepnotes.runs.tune_settings`), ``finetune``
  and ``errors``
- :mod:`~deepnotes.runs.learning_curve`: ``deepnotes learning-curve``: train and dev error
  against the number of training examples m
"""

from deepnotes.runs.config import RunConfig, read_config
from deepnotes.runs.session import Session, fit, prepare

__all__ = ["RunConfig", "Session", "fit", "prepare", "read_config"]
