"""The training loop: mini-batch gradient descent with a schedule, checkpoints, and honest stops.

Each step: forward, L = cross-entropy(softmax(z), y), backward, update. After each epoch the dev
set is evaluated and a checkpoint is written. The epoch with the best dev metric (``monitor``:
the lowest dev loss by default, or the highest dev accuracy or macro F1) is the kept model:
its weights are what ``fit`` leaves in the model and what model.safetensors holds, and with
``early_stop`` = P the run stops after P epochs without improvement (by more than
``min_delta``). A NaN or infinite loss stops the run and keeps the last good checkpoint; SIGTERM /
Ctrl-C stop at the next step boundary with a checkpoint, so ``--resume`` continues exactly where
the run left off, best epoch so far included.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from deepnotes.data.dataset import IGNORE
from deepnotes.data.loader import Batches
from deepnotes.errors import DeepnotesError, LossDiverged
from deepnotes.graphs import GraphedNetwork
from deepnotes.optim import learning_rate
from deepnotes.train import checkpoint, distributed, throughput
from deepnotes.train.evaluate import evaluate
from deepnotes.train.history import MONITORS, improves
from deepnotes.train.precision import autocast_dtype, check_compiler
from deepnotes.train.state import TrainState
from deepnotes.train.tasks import Classification, Task

log = logging.getLogger(__name__)


class TrainingInterrupted(DeepnotesError):
    """Stopped by SIGTERM or Ctrl-C after saving a checkpoint."""


class Trainer:
    """Train ``model`` with ``optimizer`` for ``epochs`` passes over the training batches.

    With ``run_dir`` the trainer checkpoints after every epoch (and on SIGTERM / Ctrl-C) and writes
    ``history.csv``; ``resume()`` loads the last checkpoint from it. ``on_epoch(row)`` is called
    after each epoch (the history row with ``rate``: the task's units a second, all ranks'),
    ``on_checkpoint()`` after each checkpoint is committed. ``task`` gives the logits, loss and
    predictions of a batch (:mod:`deepnotes.train.tasks`; default: single-label classification).
    ``cuda_graphs``: on one CUDA GPU (no DDP, no compile), replay the network's forward and
    backward of full batches from CUDA graphs (:class:`deepnotes.graphs.GraphedNetwork`).
    """

    def __init__(self, model, optimizer, *, epochs: int, schedule: str = "onecycle",
                 device: torch.device | str = "cpu", run_dir: Path | None = None,
                 progress: bool = True, on_epoch=None, on_checkpoint=None,
                 precision: str = "32", channels_last: bool = False, compile: bool = False,
                 task: Task | None = None, monitor: str | None = "dev_loss",
                 early_stop: int | None = None, min_delta: float = 0.0,
                 classes: list[str] | None = None, cuda_graphs: bool = False):
        if epochs < 1:
            raise DeepnotesError(f"--epochs {epochs}: expected at least 1")
        if monitor is not None and monitor not in MONITORS:
            raise DeepnotesError(f"--monitor {monitor}: expected one of {', '.join(MONITORS)}")
        self.monitor, self.early_stop, self.min_delta = monitor, early_stop, min_delta
        self.classes = classes  # class names, for the dev F1 (else 0..K-1)
        self.best: dict[str, torch.Tensor] | None = None  # the best epoch's weights, on the CPU
        self.model, self.optimizer = model.to(device), optimizer
        self.task = task or Classification()
        self.precision = precision
        self.amp = autocast_dtype(self.precision, torch.device(device))
        self.scaler = torch.amp.GradScaler(torch.device(device).type,
                                           enabled=self.precision == "16")
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # DDP under torchrun; torch.compile makes it a plain callable
        self.net: Callable[..., Any] = distributed.wrap(self.model, torch.device(device))
        if compile:
            check_compiler(torch.device(device))
            self.net = torch.compile(self.net)
        elif cuda_graphs and torch.device(device).type == "cuda" and not distributed.active():
            self.net = GraphedNetwork(self.model)
        self.epochs, self.schedule = epochs, schedule
        self.device = torch.device(device)
        self.run_dir = Path(run_dir) if run_dir else None
        self.on_epoch, self.on_checkpoint = on_epoch, on_checkpoint
        self.progress = progress and distributed.is_writer()  # one bar, not one a rank
        self.step_losses: list[float] = []  # this process's steps only; not part of a checkpoint
        # a GPU runs ahead of the CPU: read its step losses every 25 steps, not every step
        self.read_every = 25 if self.device.type == "cuda" and not distributed.active() else 1
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.state = TrainState()
        self._stop_signal: int | None = None  # the signal number that asked to stop

    @property
    def history(self) -> list[dict]:
        return self.state.history

    def resume(self) -> None:
        """Continue from ``run_dir/state.safetensors``."""
        if self.run_dir is None:
            raise DeepnotesError("resume() needs the run_dir of the run to continue")
        self.state, best = checkpoint.load(self.run_dir, self.model, self.optimizer)
        if best is None and self.state.best_epoch is not None:  # the model is the best epoch
            best = _snapshot(self.model)
        self.best = best
        if self.scaler.is_enabled() and self.state.scaler is not None:  # float16's loss scale
            self.scaler.load_state_dict(self.state.scaler)

    def fit(self, train: Batches, dev: Batches | None = None) -> list[dict]:
        """Run the remaining epochs (or until early stopping); leave the best epoch's weights in
        the model; return the history (one dict per epoch)."""
        with self._signals():
            while self.state.epoch < self.epochs and self.state.stopped is None:
                self._train_epoch(train, len(train))
                self._end_epoch(train, dev)
        if self.best is not None and not self._model_is_best():
            self.model.load_state_dict(self.best)
        return self.history

    def _model_is_best(self) -> bool:
        """Whether the model's weights are the best epoch's: it ended that epoch, no step since."""
        st = self.state
        return st.best_epoch is None or (st.best_epoch == st.epoch and st.step == 0)

    def extend(self, more: int) -> None:
        """Train ``more`` epochs after the ones run so far (a finished or early-stopped run):
        the schedule starts over for them, as a cycle of its own (a warm restart)."""
        st = self.state
        st.cycle_start, st.stopped, self.epochs = st.epoch, None, st.epoch + more

    def _train_epoch(self, train: Batches, steps_per_epoch: int) -> None:
        st = self.state
        self.model.train()
        bar = tqdm(total=len(train), initial=st.step, disable=not self.progress, leave=False,
                   desc=f"epoch {st.epoch + 1}/{self.epochs}", unit="batch", dynamic_ncols=True)
        start, pending = time.perf_counter(), []
        with bar:
            for x, y in train.epoch(st.epoch, start=st.step):
                lr = self._set_lr(st, steps_per_epoch)
                pending.append((*self._step(x, y, lazy=self.read_every > 1), lr))
                st.step += 1
                st.global_step += 1
                if len(pending) >= self.read_every or self._stop_signal is not None:
                    self._account(pending, bar, start, train)
                if self._stop_signal is not None:
                    st.seconds += time.perf_counter() - start
                    self._interrupt()
            self._account(pending, bar, start, train)
        st.seconds += time.perf_counter() - start

    def _account(self, pending: list, bar, start: float, train: Batches) -> None:
        """Add the steps in ``pending`` (loss, correct, counted, lr) to the epoch's sums, read from
        the device all at once; a non-finite loss stops the run. The bar shows the rate of the
        epoch's log line (:mod:`~deepnotes.train.throughput`)."""
        if not pending:
            return
        st = self.state
        numbers = [p[:3] for p in pending]
        if torch.is_tensor(numbers[0][0]):  # lazy steps: one transfer for all of them
            numbers = torch.stack([torch.stack([t.float() for t in n]) for n in numbers]).tolist()
        first_step = st.step - len(pending)
        for i, ((loss, correct, counted), (*_, lr)) in enumerate(zip(numbers, pending)):
            if not math.isfinite(loss):
                raise LossDiverged(
                    f"loss became {loss} at epoch {st.epoch + 1}, step {first_step + i + 1} "
                    f"(lr {lr:.3g}); stopped, {self._kept()}; try a lower --lr"
                )
            self.step_losses.append(loss)
            st.loss_sum += loss * counted
            st.correct += int(correct)
            st.seen += int(counted)
        pending.clear()
        elapsed = st.seconds + time.perf_counter() - start
        tokens = st.seen
        if self.task.unit == "tokens":  # all ranks' (every rank accounts each step under DDP)
            tokens = int(distributed.all_sum([st.seen], self.device)[0])
        rate = self._rate(train, tokens, elapsed)
        bar.set_postfix({"loss": f"{st.loss_sum / max(1, st.seen):.4f}",
                         "acc": f"{st.correct / max(1, st.seen):.3f}",
                         throughput.label(self.task.unit): f"{rate:.0f}"}, refresh=False)
        bar.update(len(numbers))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int, int]:
        """One step of gradient descent on a mini-batch; returns (loss, correct predictions,
        predictions made). A non-finite loss makes no update."""
        return self._step(x, y, lazy=False)

    def _step(self, x: torch.Tensor, y: torch.Tensor, lazy: bool) -> tuple:
        """The step. ``lazy`` leaves the three numbers on the device as 0-dim tensors, so that a
        GPU need not wait for the CPU to read them, and updates without looking at the loss."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        # capture needs autocast's cache of cast weights off (it lasts one step here anyway)
        graphed = isinstance(self.net, GraphedNetwork)
        with torch.autocast(self.device.type, self.amp or torch.float32,
                            enabled=self.amp is not None, cache_enabled=not graphed):
            z, y = self.task.forward(self.net, x, y)
            loss = self.task.loss(z, y)
        value = loss.detach() if lazy else self._read_loss(loss)
        if not lazy and not math.isfinite(value):
            return value, 0, 1  # no update: the weights in memory stay the last good step's
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # float16: L scaled up so small gradients survive
        self.scaler.step(self.optimizer)  # unscaled first; skipped when a gradient overflowed
        self.scaler.update()
        counted = y != IGNORE
        correct = ((self.task.predict(z) == y) & counted).sum()
        return (value, correct, counted.sum()) if lazy else (value, int(correct),
                                                             int(counted.sum()))

    def _rate(self, train: Batches, tokens: int, seconds: float) -> float:
        """The task's units a second of this epoch's steps so far, all ranks' (``tokens``: the
        targets counted, summed over the ranks)."""
        units = throughput.units_done(self.task.unit, self.state.step, train.batch_size,
                                      train.num_examples, tokens)
        return throughput.rate(units, seconds)

    def _read_loss(self, loss: torch.Tensor) -> float:
        """L as a number; under DDP the mean over the ranks, which also carries any rank's stop
        signal, so that all ranks stop at the same step."""
        value = loss.item()
        if distributed.active():
            value, stop = distributed.all_sum([value, self._stop_signal is not None], self.device)
            value /= distributed.shard()[1]
            if stop and self._stop_signal is None:
                self._stop_signal = signal.SIGTERM
        return value

    def _set_lr(self, st: TrainState, steps_per_epoch: int) -> float:
        """alpha of the schedule at this step of its cycle: epochs cycle_start..epochs (all of
        them unless the run was trained longer)."""
        first = st.cycle_start or 0
        step = (st.epoch - first) * steps_per_epoch + st.step
        total = (self.epochs - first) * steps_per_epoch
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = learning_rate(self.schedule, base, step, total, steps_per_epoch)
        return self.optimizer.param_groups[0]["lr"]

    def _end_epoch(self, train: Batches, dev: Batches | None) -> None:
        st = self.state
        loss_sum, correct, seen = distributed.all_sum([st.loss_sum, st.correct, st.seen],
                                                      self.device)
        row = {"epoch": st.epoch + 1, "train_loss": loss_sum / max(1, seen),
               "train_accuracy": correct / max(1, seen)}
        writer = distributed.is_writer()
        if dev is not None and writer:
            result = evaluate(self.model, dev, self.task, precision=self.precision)
            row["dev_loss"] = result["loss"]
            present = result["y_true"] != IGNORE
            row["dev_accuracy"] = float((result["y_pred"] == result["y_true"])[present]
                                        .float().mean())
            row["dev_f1"] = self._f1(result["y_true"], result["y_pred"])
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["seconds"] = st.seconds
        rate = self._rate(train, int(seen), st.seconds)  # seen: summed over the ranks
        if writer:
            self._check_good(row)
            self._track_best(row)
        st.history.append(row)
        st.stopped = distributed.broadcast(st.stopped)  # rank 0 decides; every rank stops
        st.next_epoch()
        if self.run_dir and writer:
            self._save(st)
        distributed.barrier()  # the checkpoint is whole before any rank goes on
        dev_text = (f" | dev loss {row['dev_loss']:.4f} acc {row['dev_accuracy']:.4f}"
                    if "dev_loss" in row else "")
        log.info("epoch %d/%d: train loss %.4f acc %.4f%s | %.0f %s", row["epoch"], self.epochs,
                 row["train_loss"], row["train_accuracy"], dev_text, rate,
                 throughput.label(self.task.unit))
        if self.on_epoch is not None:
            self.on_epoch({**row, "rate": rate})

    def _f1(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
        """The dev set's macro F1, as metrics.json computes it (NaN for no examples, or for a
        vocabulary of more than :data:`F1_CLASSES` words, whose K x K confusion matrix an epoch
        would cost more than the epoch)."""
        if not len(y_true):
            return float("nan")
        classes = self.classes or [str(k) for k in range(
            y_true.shape[1] if y_true.dim() == 2 else int(max(y_true.max(), y_pred.max())) + 1)]
        if len(classes) > F1_CLASSES:
            return float("nan")
        return float(self.task.report(y_true, y_pred, classes)["f1"])

    def _track_best(self, row: dict) -> None:
        """Keep the epoch of ``row`` if it beats the best on the monitored dev metric; stop
        early after ``early_stop`` epochs without doing so."""
        st, name = self.state, self.monitor
        if name is None or name not in row or not math.isfinite(row[name]):
            return
        st.monitor = name
        if improves(name, row[name], st.best_value, self.min_delta):
            st.best_epoch, st.best_value = row["epoch"], row[name]
            self.best = _snapshot(self.model)
        elif self.early_stop and row["epoch"] - st.best_epoch >= self.early_stop:
            st.stopped = (f"early stop: {name} did not improve on {st.best_value:.4f} (epoch "
                          f"{st.best_epoch}) by more than {self.min_delta:g} for "
                          f"{self.early_stop} epochs")
            log.info("%s", st.stopped)

    def _check_good(self, row: dict) -> None:
        """Only a good model becomes a checkpoint: finite weights whose dev loss is finite (the
        training loss alone can stay finite while the weights already give NaN)."""
        bad = checkpoint.first_non_finite(self.model.state_dict())
        dev_loss = row.get("dev_loss", 0.0)
        if bad is not None or not math.isfinite(dev_loss):
            what = f"weight {bad!r} became NaN or infinite" if bad else \
                f"the dev loss became {dev_loss}"
            raise LossDiverged(f"{what} at the end of epoch {row['epoch']} (lr {row['lr']:.3g});"
                                 f" stopped, {self._kept()}; try a lower --lr")

    def _save(self, st: TrainState) -> None:
        assert self.run_dir is not None  # both callers save only with a run_dir
        if self.scaler.is_enabled():
            st.scaler = self.scaler.state_dict()  # numbers only: JSON in the checkpoint
        best = None if self._model_is_best() else self.best
        checkpoint.save(self.run_dir, self.model, self.optimizer, st, best)
        if self.on_checkpoint is not None:
            self.on_checkpoint()

    def _kept(self) -> str:
        if self.run_dir and (self.run_dir / "state.safetensors").exists():
            return "the last good checkpoint is kept"
        return "no checkpoint had been written yet"

    def _interrupt(self) -> None:
        st = self.state
        where = f"epoch {st.epoch + 1}, step {st.step}"
        if self.run_dir:
            if distributed.is_writer():
                self._save(st)
            distributed.barrier()
            raise TrainingInterrupted(
                f"interrupted at {where}; checkpoint saved, continue with --resume {self.run_dir}"
            )
        raise TrainingInterrupted(f"interrupted at {where}")

    @contextlib.contextmanager
    def _signals(self):
        """SIGTERM and SIGINT only set a flag; the loop checkpoints at the next step boundary."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            self._stop_signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


F1_CLASSES = 2048  # the most classes the dev F1 of every epoch is computed for


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the CPU (DDP's ``module.`` prefix never in them)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
