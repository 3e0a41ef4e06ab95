"""Where the computation runs: ``--device auto|cpu|cuda|cuda:N`` and ``--gpus 1,2``.

The notes pick a GPU with ``CUDA_VISIBLE_DEVICES=1 python xxx.py``. :func:`set_visible_gpus` does
the same from inside the program; it must run before CUDA starts, so the CLI calls it first.
"""

from __future__ import annotations

import os
import re

import torch

from deepnotes.errors import DeepnotesError

MAX_SEED = 2**64 - 1  # the largest seed torch.Generator.manual_seed takes


def set_visible_gpus(gpus: str, require: bool = False) -> None:
    """Set ``CUDA_VISIBLE_DEVICES`` from ``"1,2"``; the chosen GPUs become cuda:0, cuda:1.

    ``require``: then check that every chosen GPU exists. The check asks CUDA for its devices,
    which fixes what CUDA sees for the rest of the process, so it comes after the variable is set.
    """
    chosen = gpus.replace(" ", "")
    if not re.fullmatch(r"\d+(,\d+)*", chosen):
        raise DeepnotesError(f"--gpus {gpus!r}: expected GPU indices and commas, like 0 or 1,2")
    if torch.cuda.is_initialized():
        raise DeepnotesError("--gpus: CUDA has already started; set it before any CUDA work")
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    if not require:
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0 and not torch.backends.cuda.is_built():
        raise DeepnotesError(f"--gpus {gpus}: no CUDA GPU here (this torch is built for the CPU "
                             "only); leave --gpus out to train on the CPU")
    wanted = len(chosen.split(","))
    if count < wanted:  # CUDA stops at the first index that does not exist
        raise DeepnotesError(f"--gpus {gpus}: no CUDA GPU here with "
                             f"{'these indices' if wanted > 1 else 'this index'} ({count} of "
                             f"{wanted} found); deepnotes devices lists the GPUs there are")


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` into a device that exists."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not torch.backends.mps.is_available():
            raise DeepnotesError("--device mps: Apple's MPS is not available; use --device cpu")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not match:
        raise DeepnotesError(f"--device {spec!r}: expected auto, cpu, cuda, cuda:N or mps")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise DeepnotesError(f"--device {spec}: no CUDA GPU is visible here; use --device cpu")
    if index >= count:
        raise DeepnotesError(
            f"--device {spec}: only {count} CUDA GPU(s) visible ({visible_names()}); "
            f"use cuda:0..cuda:{count - 1}"
        )
    return torch.device("cuda", index)


def available_memory() -> int:
    """Bytes of memory available to a new allocation or the page cache (Linux's MemAvailable;
    the physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: as if all data fit


def visible_names() -> str:
    """``cuda:0 NVIDIA H100, cuda:1 ...`` for error messages."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(count)) or "none"


def list_devices() -> list[dict]:
    """One dict per device: name, kind, memory and what it offers (bf16)."""
    rows = [{
        "device": "cpu",
        "name": _cpu_name(),
        "threads": torch.get_num_threads(),
        "bf16": cpu_has_bf16(),
    }]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            rows.append({
                "device": f"cuda:{i}",
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
                "bf16": torch.cuda.is_bf16_supported(),
            })
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        rows.append({"device": "mps", "name": "Apple Metal (MPS)"})
    return rows


def cpu_has_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX), so autocast pays."""
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
