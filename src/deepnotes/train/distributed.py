"""Data-parallel training on PyTorch's own engine: DistributedDataParallel, launched by torchrun.

torchrun starts N processes (ranks) and gives each RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
address. Every rank holds a replica of the model. Each global mini-batch of B examples (the same
on every rank: the order of an epoch depends on the seed alone) is cut into N slices of B/N, one
per rank, and DDP averages the gradients, so with a mean loss

    (1/N) sum_r (N/B) sum_{i in slice r} dL_i/dW = (1/B) sum_{i=1..B} dL_i/dW,

every replica takes the step one process would take on the whole batch (batch norm aside: its
mu and sigma^2 are per slice). Only rank 0 writes the run folder; the training loss and accuracy
of an epoch are summed over ranks; dev and test metrics are computed once, on rank 0.
Backends: NCCL on CUDA, Gloo on the CPU.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import uuid
from datetime import timedelta

import torch
import torch.distributed as dist

from deepnotes.device import visible_names
from deepnotes.errors import DeepnotesError, check_range

log = logging.getLogger(__name__)


def world_size() -> int:
    """N: the number of ranks torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_writer() -> bool:
    """Rank 0 writes files and prints; the other ranks only compute."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the process group when torchrun started several ranks; returns this rank's device
    (cuda:LOCAL_RANK on GPUs)."""
    if world_size() <= 1 or active():
        return _local_device(device)
    device = _local_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return device


def _local_device(device: torch.device) -> torch.device:
    if device.type == "cuda" and world_size() > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", local + 1))
        count = torch.cuda.device_count()
        if per_node > count:  # checked on every rank, so that rank 0 says it too
            raise DeepnotesError(f"--nproc {per_node}: one GPU per process, but only {count} "
                                 f"GPU(s) are visible ({visible_names()}); use --nproc "
                                 f"{count} or --device cpu")
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return device


def teardown() -> None:
    if active():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP around ``model`` when several ranks run, else the model itself."""
    if not active() or dist.get_world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The replica inside DDP (whose state_dict keys carry no ``module.`` prefix)."""
    return getattr(model, "module", model) if active() else model


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Each value summed over the ranks (the values themselves with one rank)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(obj):
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


PATIENCE = timedelta(hours=12)  # how long ranks wait for their node's first rank to load data


@contextlib.contextmanager
def node_leader_first():
    """Run the body on each node's first rank (LOCAL_RANK 0) before the other ranks: a data
    cache is then built by that rank (once per node, or once in all on a shared filesystem,
    where the cache's lock makes the leaders take turns) and opened by the others. The wait is
    a barrier of its own, on Gloo with a timeout long enough for a build."""
    if not active():
        yield
        return
    group = dist.new_group(backend="gloo", timeout=PATIENCE)
    leader = int(os.environ.get("LOCAL_RANK", "0")) == 0
    if not leader:
        dist.barrier(group=group)
    try:
        yield
    finally:
        if leader:
            dist.barrier(group=group)


def shard() -> tuple[int, int]:
    """(rank, number of ranks) for slicing each global batch."""
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def check_batch(batch_size: int) -> None:
    n = world_size()
    if n > 1 and batch_size % n:
        raise DeepnotesError(f"--batch-size {batch_size}: with {n} processes the global batch "
                             f"must be a multiple of {n} (each takes batch_size / {n})")


def launch(argv: list[str], nproc: int, torchrun_args: list[str]) -> int:
    """``deepnotes train --nproc N ...``: run the same command under torchrun's launcher (in this
    process) with N ranks on this node; ``torchrun_args`` (e.g. --nnodes=2 --node-rank=0
    --rdzv-endpoint=host:29500) pass through, else the rendezvous is local (--standalone).
    Returns 0, or the exit status of the first rank that failed. One line says why: rank 0's
    own ``error:`` line when the ranks refused their input (status 2: every rank refuses alike,
    and rank 0 prints) or were interrupted (130), else a line naming the rank that failed
    (logged as an error: the library logs, the CLI shows the log on stderr)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args

    check_range("--nproc", nproc, 1, integer=True)
    said = io.StringIO()  # torchrun's parser prints its usage and a line: keep the line
    try:
        with contextlib.redirect_stderr(said):
            args = parse_args([f"--nproc-per-node={nproc}", *torchrun_args, "-m", "deepnotes",
                               *argv])
    except SystemExit:
        why = (said.getvalue().strip().splitlines() or [""])[-1].partition("error: ")[2]
        raise DeepnotesError(f"--torchrun {' '.join(torchrun_args)!r}: not torchrun options"
                             f"{f' ({why})' if why else ''}; see torchrun --help") from None
    if not any(a.startswith(("--rdzv", "--nnodes", "--master")) for a in torchrun_args):
        args.rdzv_backend, args.rdzv_endpoint, args.rdzv_id = "c10d", "localhost:0", \
            str(uuid.uuid4())
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)  # its own log lines
    config, entrypoint, cmd_args = config_from_args(args)
    try:
        elastic_launch(config, entrypoint)(*cmd_args)
    except ChildFailedError as exc:
        halted = sorted((f.timestamp, f.exitcode) for f in exc.failures.values()
                        if f.exitcode in (2, 130))
        if halted:  # bad input or an interrupt: every rank meets it alike and rank 0 said why
            return halted[0][1]
        failed_rank, failure = exc.get_first_failure()
        log.error("training on %d processes stopped: rank %s exited with status %s", nproc,
                  failed_rank, failure.exitcode)
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0
