"""``deepnotes evaluate RUN``: a trained run's metrics on a split of its data, or of other data."""

from __future__ import annotations

import json
from pathlib import Path

from deepnotes.errors import DeepnotesError

SPLITS = ("train", "train_dev", "dev", "test")


def add_parser(sub) -> None:
    from deepnotes.cli.train import DATA_DIR_HELP, add_channels_option

    p = sub.add_parser("evaluate", help="metrics of a trained run on a data split",
                       description="Evaluate a run folder's model: accuracy, loss, precision, "
                       "recall and F1 (macro, micro, weighted, per class), confusion matrix.")
    p.add_argument("run", metavar="RUN", help="run folder written by deepnotes train")
    p.add_argument("--data", help="another data spec with the same classes (default: the run's)")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--split", default="test", choices=SPLITS,
                   help="which split (test; train_dev if the run held one out)")
    add_channels_option(p, "the run's --channels, else the data's own")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (auto)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepnotes.data.dataset import check_labels
    from deepnotes.device import resolve_device
    from deepnotes.runs.build import build_data
    from deepnotes.runs.config import read_config
    from deepnotes.runs.folder import load_trained
    from deepnotes.runs.report import split_metrics

    config = read_config(args.run)
    device = resolve_device(args.device)
    model = load_trained(args.run, config)
    if args.channels is not None and config.kind == "image" and \
            args.channels != config.in_channels:  # refused before any image is decoded
        raise DeepnotesError(f"--channels {args.channels}: {args.run} reads "
                             f"{config.in_channels}-channel images")
    other = {"data": args.data, "data_dir": args.data_dir} if args.data else {}
    data_config = config.updated(**other, channels=args.channels or config.channels)
    dataset, splits = build_data(data_config)
    if args.data and dataset.vocab is not None:
        check_same_vocabulary(args.run, config, dataset.vocab, args.data)
    if dataset.in_channels != config.in_channels:
        hint = (f"; --channels {config.in_channels} converts the images"
                if dataset.kind == "image" == config.kind else "")
        raise DeepnotesError(f"--data {data_config.data}: {dataset.in_channels} input channels "
                             f"or features, the model reads {config.in_channels}{hint}")
    check_labels(dataset.y, len(config.classes), f"--data {data_config.data}")
    if args.split not in splits.names():
        raise DeepnotesError(f"--split {args.split}: {args.run} has no train-dev split; train "
                             "with --train-dev FRACTION to hold one out")
    dataset.to(device)
    result = split_metrics(model.to(device), config, dataset, splits, device, names=[args.split])
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result, config.task.unit)
        print_per_class(result[args.split])
    return 0


def print_table(metrics: dict, unit: str | None = None) -> None:
    """One row per split: the targets predicted (examples, or with ``unit`` "tokens" the tokens
    of the sequences' steps; None: tokens where the splits have a perplexity or an exact match),
    accuracy, loss, macro precision / recall / F1, micro and weighted F1; then which epoch the
    run kept (metrics.json's ``best``), when it says."""
    result = {k: v for k, v in metrics.items() if k != "best"}
    per_token = ("perplexity", "exact_match")  # a language model's, an encoder-decoder's
    if unit is None and any(k in m for m in result.values() for k in per_token):
        unit = "tokens"
    counted = "tokens" if unit == "tokens" else "examples"
    w = max([6, *map(len, result)])  # train_dev is wider than the others
    print(f"{'split':<{w}} {counted:>8} {'accuracy':>9} {'loss':>8} {'precision':>10} "
          f"{'recall':>7} {'F1':>7} {'F1 micro':>9} {'F1 wtd':>7}")
    for name, m in result.items():
        n = sum(row["support"] for row in m["per_class"])
        print(f"{name:<{w}} {n:>8} {m['accuracy']:>9.4f} {m['loss']:>8.4f} {m['precision']:>10.4f} "
              f"{m['recall']:>7.4f} {m['f1']:>7.4f} {m['f1_micro']:>9.4f} {m['f1_weighted']:>7.4f}")
    tasks = any("positives" in row for m in result.values() for row in m["per_class"])
    print("(precision, recall and F1 are macro averages over the "
          + ("tasks; examples counts the labels present)" if tasks else
             "classes; tokens counts the steps predicted, padding not, and accuracy is per "
             "token)" if counted == "tokens" else "classes)"))
    for key, what in (("exact_match", "exact match (whole outputs, greedy decoding)"),
                      ("perplexity", "perplexity exp(loss)")):
        if any(key in m for m in result.values()):
            print(f"{what}: " + ", ".join(f"{name} {m[key]:.4f}" for name, m in result.items()))
    best = metrics.get("best")
    if best:
        print(f"kept: epoch {best['epoch']}, the best {best['monitor']} ({best['value']:.4f})"
              + (f"; {best['stopped']}" if best.get("stopped") else ""))


def print_per_class(m: dict) -> None:
    width = max(8, *(len(str(row["class"])) for row in m["per_class"]))
    print(f"\n{'class':<{width}} {'precision':>10} {'recall':>7} {'F1':>7} {'support':>8}")
    for row in m["per_class"]:
        if row["support"] == 0 and str(row["class"]) in ("<pad>", "<unk>", "<bos>"):
            continue  # a vocabulary's specials, never a target
        print(f"{row['class']!s:<{width}} {row['precision']:>10.4f} {row['recall']:>7.4f} "
              f"{row['f1']:>7.4f} {row['support']:>8}")


def check_same_vocabulary(run, config, tokens: list[str], data: str) -> None:
    """Sequence data is read into ids of its own vocabulary: another data set's ids mean other
    tokens to the run's model, so only data whose vocabulary is the run's (vocab.json) can be
    scored."""
    from deepnotes.runs.folder import read_vocab

    ours = read_vocab(run, config)[0]
    if tokens != ours:
        raise DeepnotesError(f"--data {data}: its vocabulary ({len(tokens)} tokens) is not the "
                             f"run's ({len(ours)} in {Path(run) / 'vocab.json'}), so its ids "
                             "would mean other tokens; score new texts with deepnotes predict, "
                             "or evaluate on the run's own data")
