"""``deepnotes devices``: the CPU and every visible GPU, with what each offers."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("devices", help="list the devices training can use",
                       description="List the CPU and the visible CUDA / MPS devices.")
    p.add_argument("--gpus", help="GPU indices to make visible first, e.g. 1,2 "
                   "(sets CUDA_VISIBLE_DEVICES)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepnotes.device import list_devices, set_visible_gpus

    if args.gpus:
        set_visible_gpus(args.gpus)
    for row in list_devices():
        extras = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("device", "name"))
        print(f"{row['device']:<8} {row['name']}  ({extras})")
    return 0
