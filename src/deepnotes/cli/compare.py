"""``deepnotes compare-optimizers``: gradient descent, momentum, RMSprop and Adam (and their
variants, ``rmsprop+eps=0``, ...) on one model, from the same initial weights; one plot of the
loss curves and one table."""

from __future__ import annotations

# the RunConfig fields this command sets, as in ``deepnotes train``; every option defaults to None
OPTIONS = ["model", "data", "data_dir", "epochs", "batch_size", "schedule", "seed", "device",
           "image_size", "data_cache", "cache_dir", "data_order"]
EPOCHS = 5  # enough for the curves to part; `deepnotes train` defaults to more


def add_parser(sub) -> None:
    from deepnotes.cli.train import BATCH_HELP, add_image_options, add_model_and_data_options
    from deepnotes.optim import DEFAULT_LRS, SCHEDULES
    from deepnotes.runs.config import DEFAULTS as D
    from deepnotes.runs.rules import ORDER

    defaults = ", ".join(f"{k} {DEFAULT_LRS[k]:g}" for k in ORDER)
    p = sub.add_parser(
        "compare-optimizers", help="train one model with sgd, momentum, rmsprop and adam",
        description="Train the same model from the same initial weights, on the same mini-batches "
        "in the same order, with gradient descent, momentum, RMSprop and Adam (and "
        "variants of them: --optimizers). Writes a run folder per optimizer (RUN/adam, "
        "RUN/rmsprop+eps=0, ...), loss_curves.png (training loss per step, dev accuracy per "
        "epoch) and comparison.csv / comparison.json (final dev accuracy, F1, loss, time).",
        argument_default=None)
    add_model_and_data_options(p, label_column=False)
    add_image_options(p)
    p.add_argument("--epochs", type=int, help=f"passes over the training set ({EPOCHS})")
    p.add_argument("--batch-size", type=int, help=BATCH_HELP)
    p.add_argument("--optimizers", default=",".join(ORDER), metavar="NAME[+VARIANT...],...",
                   help=f"comma-separated rows to compare ({','.join(ORDER)}): an optimizer, "
                   "optionally with variants, each a row and a run folder of its own. "
                   "VARIANT: eps=X (rmsprop, adam), eps-inside-sqrt (sqrt(s + eps); rmsprop, "
                   "adam), no-bias-correction (adam), as deepnotes train's --eps, "
                   "--eps-inside-sqrt, --no-bias-correction. Example: "
                   "--optimizers rmsprop,rmsprop+eps=0,adam,adam+eps-inside-sqrt")
    p.add_argument("--lr", metavar="ALPHA|NAME=ALPHA,...",
                   help="learning rate alpha: one number for every optimizer (--lr 0.01), or per "
                   "optimizer (--lr sgd=0.05,adam=1e-3; the others keep their default), or both "
                   "(--lr 0.01,adam=1e-3). NAME=ALPHA sets the optimizer and its variants; a "
                   "whole entry sets that row alone and wins (--lr rmsprop+eps=0=1e-4). "
                   f"Defaults: {defaults}")
    p.add_argument("--schedule", help=f"learning-rate schedule: {', '.join(SCHEDULES)} "
                   f"({D['schedule']}), the same for every optimizer")
    p.add_argument("--seed", type=int, help=f"seed of splits, weights, order ({D['seed']})")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (auto)")
    p.add_argument("--out", default="runs", help="folder for run folders (runs)")
    p.add_argument("--name", help="run folder name (default: compare-MODEL-DATA, numbered if "
                   "taken)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --name folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepnotes.cli.train import explicit_options
    from deepnotes.runs.compare import comparison_folder, run_comparison
    from deepnotes.runs.config import RunConfig
    from deepnotes.runs.folder import keeping_runs
    from deepnotes.runs.rules import learning_rates, parse_lrs, parse_rules
    from deepnotes.runs.session import prepare

    explicit = explicit_options(args, OPTIONS)
    rules = parse_rules(args.optimizers)
    lrs = learning_rates(rules, parse_lrs(args.lr) if args.lr is not None else None)
    config = RunConfig(**{"epochs": EPOCHS, **explicit})
    session = prepare(config, progress=args.progress, fresh=True)
    run_dir = comparison_folder(args.out, args.name, args.overwrite, config)
    with keeping_runs(run_dir, "comparison"):
        rows = run_comparison(session, rules, run_dir, lrs, progress=args.progress)
    print_rows(rows)
    print(f"run folder: {run_dir}  (plot: {run_dir / 'loss_curves.png'})")
    return 0


def print_rows(rows: list[dict]) -> None:
    """One aligned row per optimizer, then which reached the best dev accuracy."""
    from deepnotes.runs.compare import best
    from deepnotes.runs.rules import parse_rule

    w = max([10, *(len(r["optimizer"]) for r in rows)])  # labels: adam+eps-inside-sqrt
    print(f"{'optimizer':<{w}} {'alpha':>8} {'dev acc':>8} {'dev F1':>7} {'train loss':>10} "
          f"{'seconds':>8}")
    for r in rows:
        if r.get("diverged"):
            hint = ("eps = 0 divides 0 by 0 where a gradient and s are both 0"
                    if parse_rule(r["optimizer"]).variants.get("eps") == 0 else
                    "try a lower alpha")
            print(f"{r['optimizer']:<{w}} {r['lr']:>8.3g}   diverged: the loss became NaN or "
                  f"infinite; {hint}")
            continue
        print(f"{r['optimizer']:<{w}} {r['lr']:>8.3g} {r['dev_accuracy']:>8.4f} "
              f"{r['dev_f1']:>7.4f} {r['train_loss']:>10.4f} {r['seconds']:>8.1f}")
    winners = best(rows)
    if winners:
        top = max(r["dev_accuracy"] for r in rows if r["dev_accuracy"] is not None)
        tied = " (tied)" if len(winners) > 1 else ""
        print(f"best dev accuracy: {', '.join(winners)} {top:.4f}{tied}")
