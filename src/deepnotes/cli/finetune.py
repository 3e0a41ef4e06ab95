"""``deepnotes finetune RUN_OR_WEIGHTS --data SPEC``: transfer learning from task A to task B.

Loads a run trained on A (or a torchvision-format weight file with ``--model``), replaces the
output layer with one for B's classes, freezes the first N layer groups and trains on B into a
normal run folder, which ``evaluate`` and ``predict`` read like any other.
"""

from __future__ import annotations

from pathlib import Path

# the RunConfig fields this command sets, as in ``deepnotes train``; every option defaults to None
OPTIONS = ["model", "data", "data_dir", "skip_bad", "label_column", "epochs", "batch_size", "lr",
           "optimizer", "schedule", "beta", "weight_decay", "seed", "device", "bf16", "augment",
           "image_size", "channels", "data_cache", "data_order"]


def add_parser(sub) -> None:
    from deepnotes.cli.train import (
        BATCH_HELP,
        DATA_DIR_HELP,
        DATA_HELP,
        add_channels_option,
        add_image_options,
    )
    from deepnotes.models import list_models
    from deepnotes.runs.config import DEFAULTS as D

    p = sub.add_parser(
        "finetune", help="transfer learning: fine-tune a trained run or weight file on new data",
        description="Pre-train on task A, fine-tune on task B: load a run (or a torchvision-format "
        "weight file), put a new output layer for B's classes on it, freeze the first N layer "
        "groups and train on B. The more data B has, the fewer layers to freeze.",
        argument_default=None)
    p.add_argument("source", metavar="RUN_OR_WEIGHTS",
                   help="a run folder, or a .safetensors / .pth state_dict (then give --model)")
    p.add_argument("--data", required=True, help=f"task B's data: {DATA_HELP}")
    p.add_argument("--model", help=f"the network a weight file holds: {', '.join(list_models())}")
    p.add_argument("--freeze", default="auto",
                   help="auto (from B's examples per class), none, all-but-head, or N: the first "
                   "N layer groups (auto)")
    p.add_argument("--gradual", action="store_true",
                   help="gradual unfreezing: start with the head, thaw one more group an epoch, "
                   "with lower learning rates for earlier groups")
    p.add_argument("--lr-decay", type=float, metavar="D", help="group l of L learns at "
                   "lr / D^(L - l) (2.6 with --gradual, else 1)")
    p.add_argument("--no-cache", action="store_true", help="with every group frozen, run the "
                   "frozen layers each step instead of training the head on cached features")
    p.add_argument("--cache-dir", help="folder of the feature cache (OUT/.feature-cache)")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    add_image_options(p, cache_dir=False)  # --cache-dir is the feature cache's here
    add_channels_option(p, "1 if every image is grey, else 3; the source run's n_C must match")
    p.add_argument("--label-column", help="label column of a CSV (default: 'label', else the last)")
    p.add_argument("--skip-bad", action="store_const", const=True,
                   help="train without unreadable images instead of stopping")
    p.add_argument("--epochs", type=int, help=f"passes over B's training set ({D['epochs']})")
    p.add_argument("--batch-size", type=int, help=BATCH_HELP)
    p.add_argument("--optimizer", help=f"update rule ({D['optimizer']})")
    p.add_argument("--lr", type=float, help="peak learning rate alpha of the head (the "
                   "optimizer's default)")
    p.add_argument("--beta", type=float, help="beta of momentum and rmsprop, beta1 of adam (0.9)")
    p.add_argument("--weight-decay", type=float, metavar="LAMBDA", help="L2: dW += LAMBDA W (0)")
    p.add_argument("--schedule", help=f"learning-rate decay ({D['schedule']})")
    p.add_argument("--augment", help="image augmentation, a comma list of crop, resized-crop, "
                   "flip (turns the feature cache off)")
    p.add_argument("--seed", type=int, help=f"seed of splits, the new head, order ({D['seed']})")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (auto)")
    p.add_argument("--bf16", action="store_const", const=True, help="bfloat16 autocast")
    p.add_argument("--out", default="runs", help="folder for run folders (runs)")
    p.add_argument("--name", help="run folder name (default: finetune-MODEL-DATA)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --name folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepnotes.cli.evaluate import print_table
    from deepnotes.cli.train import explicit_options
    from deepnotes.runs import folder
    from deepnotes.runs.config import RunConfig
    from deepnotes.runs.finetune import fit_finetune, prepare_finetune

    if args.name is not None:
        folder.check_name(args.name)  # before any work
    config = RunConfig(**explicit_options(args, OPTIONS))
    session, line = prepare_finetune(args.source, config, freeze_option=args.freeze,
                                     gradual=args.gradual, lr_decay=args.lr_decay,
                                     progress=args.progress)
    print(line)
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(args.out) / ".feature-cache"
    with folder.create(args.out, args.name, f"finetune-{config.model}-{config.data_name}",
                       args.overwrite, resumable=False) as run:  # short: started again
        _, result = fit_finetune(session, run.path, cache=not args.no_cache, cache_dir=cache_dir,
                                 progress=args.progress, on_checkpoint=run.committed)
    print_table(result)
    print(f"run folder: {run.path}")
    return 0

