"""Where training stands: :class:`TrainState`, the trainer's counters and history, which a
checkpoint stores as JSON (and state.json shows)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

OPTIONAL = ("scaler", "checkpoint", "monitor", "best_epoch", "best_value", "stopped",
            "cycle_start")


@dataclass
class TrainState:
    """The epoch and the step within it (``step`` batches of epoch ``epoch`` done, 0-based),
    the steps of the whole run, the running sums of the epoch so far (loss x examples, correct
    and counted predictions, seconds), one history row a finished epoch, float16's loss scale,
    the id of the checkpoint that holds this state, the best epoch so far by the monitored dev
    metric (1-based) and its value, why the run stopped before its last epoch, and the epoch
    where its learning-rate schedule last started over (a run trained longer)."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    scaler: dict | None = None  # torch.amp.GradScaler's state under --precision 16
    checkpoint: str | None = None  # "epoch:step:global_step" of the checkpoint that holds it
    monitor: str | None = None  # the history column that chooses the best epoch
    best_epoch: int | None = None
    best_value: float | None = None
    stopped: str | None = None  # e.g. early stopping's reason; None: ran (or runs) every epoch
    cycle_start: int | None = None  # the epoch the schedule restarted at (--more-epochs); None: 0

    def next_epoch(self) -> None:
        """The epoch is done: counting starts again at step 0 of the next."""
        self.epoch += 1
        self.step, self.loss_sum, self.correct, self.seen, self.seconds = 0, 0.0, 0, 0, 0.0

    def to_dict(self) -> dict:
        """The JSON object of a checkpoint (the optional fields only once set)."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if v is not None or k not in OPTIONAL}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        """The state in a checkpoint's (checked) JSON object; fields it does not know are left."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
