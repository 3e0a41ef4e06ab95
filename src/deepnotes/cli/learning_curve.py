"""``deepnotes learning-curve``: train and dev error against the number of training examples, the
same model from the same initial weights on nested subsets of the training split."""

from __future__ import annotations

# the RunConfig fields this command sets, as in ``deepnotes train``; every option defaults to None
OPTIONS = ["model", "data", "data_dir", "label_column", "epochs", "batch_size", "optimizer", "lr",
           "weight_decay", "schedule", "augment", "seed", "device", "image_size", "data_cache",
           "cache_dir", "data_order"]


def add_parser(sub) -> None:
    from deepnotes.cli.train import BATCH_HELP, add_image_options, add_model_and_data_options
    from deepnotes.optim import SCHEDULES, list_optimizers
    from deepnotes.runs.config import DEFAULTS as D
    from deepnotes.runs.learning_curve import BASELINES, BUDGETS, DEFAULT_SIZES

    p = sub.add_parser(
        "learning-curve", help="train and dev error against the number of training examples",
        description="Train one model from the same initial weights on the first m examples of a "
        "seeded permutation of the training split, for each size m (each a subset of the larger "
        "ones), and evaluate every size on the same dev set. Error = 1 - accuracy: a train error "
        "far above human error is avoidable bias (more data will not fix it); a dev error far "
        "above train error is variance, and a gap still closing at the largest m says that more "
        "data would help. Writes a run folder per size (RUN/m-144, ...), learning_curve.csv / "
        ".json and learning_curve.png.",
        argument_default=None)
    p.add_argument("--sizes", default=DEFAULT_SIZES, metavar="S,S,...",
                   help="training-set sizes: fractions of the training split in (0, 1] (with a "
                   "point: 0.1, 1.0) or counts of examples (whole numbers: 100,500) "
                   f"({DEFAULT_SIZES})")
    p.add_argument("--human-error", metavar="E",
                   help="human-level error, a proxy for Bayes error, drawn as a line: a fraction "
                   "(0.01) or a percent (1%%) (none)")
    p.add_argument("--baseline", choices=BASELINES,
                   help="also fit scikit-learn's logistic regression on the same normalised "
                   "pixels or features, flattened, at the same sizes (images and tables)")
    p.add_argument("--budget", choices=BUDGETS, default="updates",
                   help="what every size gets alike: the mini-batch updates of --epochs passes "
                   "over the largest size (a smaller m trains more epochs), or --epochs passes "
                   "(a smaller m gets fewer updates) (updates)")
    add_model_and_data_options(p)
    add_image_options(p)
    p.add_argument("--epochs", type=int, help="passes over the largest size's examples, or "
                   f"over every size's with --budget epochs ({D['epochs']})")
    p.add_argument("--batch-size", type=int, help=BATCH_HELP)
    p.add_argument("--optimizer", help=f"update rule: {', '.join(list_optimizers())} "
                   f"({D['optimizer']})")
    p.add_argument("--lr", type=float, help="learning rate alpha (the optimizer's default)")
    p.add_argument("--weight-decay", type=float, metavar="LAMBDA",
                   help="L2 regularisation: dW += LAMBDA W (0)")
    p.add_argument("--schedule", help=f"learning-rate schedule: {', '.join(SCHEDULES)} "
                   f"({D['schedule']})")
    p.add_argument("--augment", help="image augmentation while training: crop, resized-crop, "
                   "flip (none)")
    p.add_argument("--seed", type=int, help=f"seed of splits, subsets, weights, order "
                   f"({D['seed']})")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (auto)")
    p.add_argument("--out", default="runs", help="folder for run folders (runs)")
    p.add_argument("--name", help="run folder name (default: curve-MODEL-DATA, numbered if taken)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --name learning-curve folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepnotes.cli.train import explicit_options
    from deepnotes.runs.config import RunConfig
    from deepnotes.runs.folder import keeping_runs
    from deepnotes.runs.learning_curve import (
        check_baseline,
        curve_folder,
        parse_sizes,
        resolve_sizes,
        run_learning_curve,
    )
    from deepnotes.runs.session import prepare
    from deepnotes.strategy import parse_human_error

    explicit = explicit_options(args, OPTIONS)
    sizes = parse_sizes(args.sizes)
    human = parse_human_error(args.human_error) if args.human_error is not None else None
    config = RunConfig(**explicit)
    session = prepare(config, progress=args.progress, fresh=True)
    resolve_sizes(sizes, len(session.splits.train))  # refused before a folder is made
    check_baseline(args.baseline, session.dataset, config.data)
    run_dir = curve_folder(args.out, args.name, args.overwrite, config)
    with keeping_runs(run_dir, "learning curve"):
        curve = run_learning_curve(session, sizes, run_dir, human_error=human,
                                   baseline=args.baseline, budget=args.budget,
                                   progress=args.progress)
    print_curve(curve)
    print(f"run folder: {run_dir}  (plot: {run_dir / 'learning_curve.png'})")
    return 0


def print_curve(curve) -> None:
    """One aligned row per size, then the gaps at the largest m."""
    base = curve.baseline
    head = f"{'m':>8} {'epochs':>6} {'train error':>11} {'dev error':>9}"
    print(head + (f" {base + ' train':>14} {base + ' dev':>12}" if base else ""))
    for p in curve.points:
        row = f"{p.m:>8} {p.epochs:>6} {p.train_error:>11.4f} {p.dev_error:>9.4f}"
        if base:
            row += f" {p.baseline_train_error:>14.4f} {p.baseline_dev_error:>12.4f}"
        print(row)
    last = curve.points[-1]
    print(f"dev error of every size on the same {last.dev_examples} dev examples; "
          f"training pool {curve.pool}")
    gaps = curve.gaps()
    if "avoidable_bias" in gaps:
        print(f"human error {curve.human_error:.4f}; at m = {last.m}: avoidable bias (train - "
              f"human) {gaps['avoidable_bias']:.4f}, variance (dev - train) "
              f"{gaps['variance']:.4f}")
    else:
        print(f"at m = {last.m}: variance (dev - train) {gaps['variance']:.4f}")
