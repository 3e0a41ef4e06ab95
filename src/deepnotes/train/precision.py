"""--precision, --compile and --cuda-graphs: what each asks of the device, checked before any
work.

``32`` trains in float32; ``bf16`` autocasts the forward pass to bfloat16 (CPUs with AVX512-BF16
or AMX, and GPUs); ``16`` to float16, on CUDA only, where torch scales the loss so that small
gradients survive float16's range.
"""

from __future__ import annotations

import shutil

import torch

from deepnotes.errors import DeepnotesError

PRECISIONS = ("32", "bf16", "16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a --precision: None (float32), bfloat16, or float16 (CUDA only: on
    other devices its range needs loss scaling that torch offers on CUDA)."""
    if precision not in PRECISIONS:
        raise DeepnotesError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if precision == "16" and device.type != "cuda":
        raise DeepnotesError(f"--precision 16 needs a CUDA GPU (this run is on {device.type}); "
                             "use --precision bf16 on a CPU")
    return {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[precision]


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype to evaluate a run trained at ``precision`` on ``device``: as in
    training, but a float16 run off CUDA in float32 (float16 needed CUDA for its loss scaling,
    which evaluation does not do; float32 holds every float16 weight exactly)."""
    if precision == "16" and device.type != "cuda":
        return None
    return autocast_dtype(precision, device)


def check_compiler(device: torch.device) -> None:
    """torch.compile on the CPU generates C++: refuse early, in one line, without a compiler."""
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise DeepnotesError("--compile on the CPU needs a C++ compiler (g++ or clang++); "
                             "install one or train without --compile")


def check_cuda_graphs(cuda_graphs: bool, compile: bool, device: torch.device,
                      processes: int = 1) -> None:
    """--cuda-graphs replays a network captured on one CUDA GPU: refuse it elsewhere, beside
    --compile (which does its own graphs, or none) and under DDP (one graph a rank would need its
    gradient hooks in the capture), in one line."""
    if not cuda_graphs:
        return
    if device.type != "cuda":
        raise DeepnotesError(f"--cuda-graphs needs a CUDA GPU (this run is on {device.type}); "
                             "train without it")
    if compile:
        raise DeepnotesError("--cuda-graphs and --compile: choose one (torch.compile manages "
                             "its own graphs)")
    if processes > 1:
        raise DeepnotesError(f"--cuda-graphs runs in one process, and this run has {processes} "
                             "(--nproc or torchrun); train without it")
