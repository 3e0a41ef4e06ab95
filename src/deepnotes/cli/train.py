"""``deepnotes train``: train a network end to end and report dev/test precision, recall and F1."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from deepnotes.data import Batches
from deepnotes.data.images import MAX_SIDE
from deepnotes.train.schema import COUNT

BATCH_HELP = ("mini-batch size (64; for fewer than 256 training examples the largest power of "
              "two that makes 4 batches an epoch, at least 8)")
DATA_HELP = ("digits, breast-cancer, fashion-mnist, mnist, dates (or dates:N), a folder with one "
             "sub-folder per class, a .csv file (a table, or text,label), a .txt (character "
             "language model), a .conll (tagger) or a .tsv of pairs (encoder-decoder)")
DATA_DIR_HELP = ("folder holding the IDX files of fashion-mnist / mnist (default: "
                 "/usr/share/datasets/fashion-mnist for fashion-mnist if there, else "
                 "$DEEPNOTES_DATA/NAME, else ~/.cache/deepnotes/NAME)")


def add_parser(sub) -> None:
    from deepnotes.optim import DEFAULT_LRS, SCHEDULES, list_optimizers
    from deepnotes.runs.config import DEFAULTS as D
    from deepnotes.train.recipes import list_recipes

    p = sub.add_parser(
        "train", help="train a network and report dev/test metrics",
        description="Train a network end to end. With no options: LeNet-5 on scikit-learn's "
        "handwritten digits, shown at 32x32, in well under a minute on a CPU.",
        argument_default=None)
    p.add_argument("--recipe", help=f"a named set of defaults for the other options: "
                   f"{', '.join(list_recipes())} (fast: fastnet, augmentation, big batches, "
                   "bfloat16 where the hardware has it; see the README); explicit options win")
    add_model_and_data_options(p)
    p.add_argument("--targets", type=_names, metavar="A,B,C",
                   help="multi-task: the label columns of a CSV table, each 0, 1 or empty "
                   "(missing); one sigmoid output per task, loss over the labels present")
    p.add_argument("--multitask-loss", choices=("present", "examples"),
                   help="multi-task: average the loss over the labels present, 1/|P| (present, "
                   "the default: alpha does not depend on the number of tasks or of missing "
                   "labels), or over the examples, the course's 1/m (examples)")
    p.add_argument("--class-weights", type=_weights, metavar="balanced|W,W,...",
                   help="weigh each class's examples in the loss: balanced (w_k = m / (K m_k) "
                   "from the training split, for imbalanced classes) or one positive weight a "
                   "class, in the classes' order (off)")
    p.add_argument("--skip-bad", action="store_const", const=True,
                   help="train without unreadable images instead of stopping")
    add_image_options(p)
    add_channels_option(p)
    p.add_argument("--epochs", type=int, help=f"passes over the training set ({D['epochs']})")
    p.add_argument("--batch-size", type=int, help=BATCH_HELP)
    p.add_argument("--optimizer", help=f"update rule: {', '.join(list_optimizers())} "
                   f"({D['optimizer']})")
    p.add_argument("--lr", type=float, help="peak learning rate alpha (by optimizer: "
                   + ", ".join(f"{k} {v:g}" for k, v in sorted(DEFAULT_LRS.items())) + ")")
    p.add_argument("--beta", type=float, help="averaging weight beta of momentum and rmsprop, "
                   "beta1 of adam (0.9)")
    p.add_argument("--weight-decay", type=float, metavar="LAMBDA",
                   help="L2 regularisation: dW += LAMBDA W (0)")
    p.add_argument("--eps", type=float, help="rmsprop and adam: the eps of the denominator "
                   "(1e-8; 0 with rmsprop is the notes' RMSprop)")
    p.add_argument("--eps-inside-sqrt", action="store_const", const=True,
                   help="rmsprop and adam: alpha dW / sqrt(S + eps) instead of / (sqrt(S) + eps)")
    p.add_argument("--no-bias-correction", dest="bias_correction", action="store_const",
                   const=False, help="adam: V and S without the 1 / (1 - beta^t) correction")
    p.add_argument("--schedule", help=f"learning-rate decay: {', '.join(SCHEDULES)}, some with an "
                   f"argument, e.g. inverse:0.5 or step:10:0.1 ({D['schedule']})")
    p.add_argument("--monitor", choices=("dev_loss", "dev_accuracy", "dev_f1"),
                   help="the dev metric whose best epoch is the kept model (model.safetensors, "
                   "test metrics) (dev_loss)")
    p.add_argument("--early-stop", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without improvement of --monitor (the best "
                   "epoch is still the one kept) (off)")
    p.add_argument("--min-delta", type=float,
                   help="an improvement of --monitor must exceed this (0)")
    p.add_argument("--tensorboard", action="store_const", const=True,
                   help="write the learning curves for TensorBoard into RUN/tensorboard (needs "
                   "pip install 'deepnotes[tensorboard]'; view: tensorboard --logdir runs)")
    p.add_argument("--augment", help="image augmentation while training, a comma list of crop, "
                   "resized-crop, flip (random shifts; random windows of 8-100%% of the "
                   "area resized back, for photos; mirror images); none by default")
    p.add_argument("--rnn-cell", choices=("full", "simplified", "reset-after", "tanh", "slide"),
                   help="cell variants: gru full (with Gamma_r, the default), "
                   "simplified (without), reset-after (cuDNN's); lstm, charlm, tagger: tanh "
                   "(a = Gamma_o tanh(c), the default) or slide (a = Gamma_o c)")
    p.add_argument("--max-len", type=int, help="sequences: cut longer ones to this many tokens "
                   "(with a warning; default: keep all)")
    p.add_argument("--seq-len", type=int, help="character language model: characters a training "
                   "sequence (64)")
    p.add_argument("--min-count", type=int, help="text: tokens seen fewer times become <unk> (1)")
    p.add_argument("--errors", choices=("strict", "replace"),
                   help="text: stop at undecodable bytes, or replace them with U+FFFD (strict)")
    p.add_argument("--train-dev", type=float, metavar="FRACTION",
                   help="hold out this share of the training pool as a train-dev split (same "
                   "distribution as train, never trained on; for deepnotes diagnose) (0)")
    p.add_argument("--seed", type=int, help=f"seed of splits, weights, order ({D['seed']})")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (auto)")
    p.add_argument("--gpus", help="GPU indices to use, e.g. 1,2 (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--precision", choices=("32", "bf16", "16"),
                   help="float32, or autocast to bfloat16 (GPUs, CPUs with AVX512-BF16/AMX) or "
                   "float16 with loss scaling (CUDA) (32)")
    p.add_argument("--channels-last", action="store_const", const=True,
                   help="convolutions on NHWC tensors (faster on GPUs with tensor cores)")
    p.add_argument("--compile", action="store_const", const=True,
                   help="torch.compile the network (needs a C++ compiler on CPUs; the first "
                   "steps are slow while it compiles)")
    p.add_argument("--cuda-graphs", action="store_const", const=True,
                   help="replay the network's forward and backward of full batches from CUDA "
                   "graphs (one CUDA GPU; not with --compile or --nproc)")
    p.add_argument("--bf16", action="store_const", const=True,
                   help="the same as --precision bf16")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="data-parallel training on N processes of this machine (DDP through "
                   "torchrun; gloo on CPUs, nccl on GPUs); the global batch is split among them")
    p.add_argument("--torchrun", metavar="ARGS", default="",
                   help="with --nproc: more torchrun options, e.g. \"--nnodes=2 "
                   "--node-rank=0 --rdzv-endpoint=host:29500\"")
    p.add_argument("--out", default="runs", help="folder for run folders (runs)")
    p.add_argument("--name", help="run folder name (default: MODEL-DATA, numbered if taken)")
    p.add_argument("--resume", metavar="RUN", help="continue the interrupted run in folder RUN")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --name folder")
    p.add_argument("--more-epochs", type=int, metavar="K",
                   help="with --resume of a finished run: train K epochs more; the schedule "
                   "starts over for them (a warm restart)")
    p.add_argument("--allow-changes", action="store_true",
                   help="with --resume: accept options that differ from the run's (with a warning)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def add_model_and_data_options(p, label_column: bool = True) -> None:
    """--model, --data, --data-dir and (for commands that read a CSV's labels) --label-column."""
    from deepnotes.models import list_models
    from deepnotes.runs.config import DEFAULTS as D

    p.add_argument("--model", help=f"network: {', '.join(list_models())} "
                   "(default: lenet5 for images, mlp for tables)")
    p.add_argument("--data", help=f"{DATA_HELP} (default: {D['data']})")
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    if label_column:
        p.add_argument("--label-column",
                       help="label column of a CSV (default: 'label', else the last)")


def add_image_options(p, cache_dir: bool = True) -> None:
    """--image-size, --data-cache, --data-order and (unless the command has its own)
    --cache-dir."""
    p.add_argument("--image-size", type=int, metavar="N",
                   help="images: n_H = n_W in pixels for models with adaptive pooling (shorter "
                   "side resized to N, centre crop; default: the model's own size)")
    p.add_argument("--data-cache", choices=("auto", "on", "off"),
                   help="image folders: decode once into a cache on disk and read batches from it "
                   "(on), or decode into memory (off); auto: the cache above 1 GiB decoded (auto)")
    p.add_argument("--data-order", choices=("auto", "random", "quasi-random"),
                   help="training batches: a random permutation each epoch, or quasi-random (the "
                   "cache read in shuffled runs of neighbours, for a cache larger than memory); "
                   "auto: quasi-random when the cache is larger than the memory available")
    if cache_dir:
        p.add_argument("--cache-dir", metavar="DIR",
                       help="where decoded caches live (default: $DEEPNOTES_CACHE_DIR, else "
                       "$XDG_CACHE_HOME/deepnotes or ~/.cache/deepnotes)")


def add_channels_option(p, default: str = "1 if every image is grey, else 3") -> None:
    """--channels 1|3: images converted to grey or RGB as they are read."""
    p.add_argument("--channels", type=int, choices=(1, 3),
                   help=f"images: convert each to grey (1) or RGB (3) as it is read, e.g. grey "
                   f"digits saved as RGB JPEGs ({default})")


def _names(text: str) -> list[str]:
    """``a,b,c`` -> ["a", "b", "c"] (argparse type of --targets)."""
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected column names separated by commas")
    return names


def _weights(text: str) -> str | list[float]:
    """``balanced`` or ``w1,w2,...`` (argparse type of --class-weights), each w finite > 0."""
    if text.strip().lower() == "balanced":
        return "balanced"
    try:
        weights = [float(t) for t in text.split(",")]
    except ValueError:
        weights = []
    if len(weights) < 2 or not all(0 < w < float("inf") for w in weights):
        raise argparse.ArgumentTypeError(f"{text!r}: expected balanced, or a positive weight "
                                         "for each class separated by commas")
    return weights


def run(args) -> int:
    from deepnotes.device import set_visible_gpus
    from deepnotes.runs import folder
    from deepnotes.runs.config import RunConfig
    from deepnotes.train import distributed

    if args.gpus:
        set_visible_gpus(args.gpus, require=True)  # before --nproc: the ranks inherit it
    if args.nproc is not None:  # bad numbers and names are refused before any process starts
        explicit_options(args, RunConfig.options())
        if args.name is not None:
            folder.check_name(args.name)
        return distributed.launch(_without_launch_options(args.argv), args.nproc,
                                  torchrun_args(args.torchrun))
    try:
        return _run(args)
    finally:
        distributed.teardown()


def torchrun_args(text: str) -> list[str]:
    """--torchrun's string split as a shell would; unbalanced quotes refused in one line."""
    from deepnotes.errors import DeepnotesError

    try:
        return shlex.split(text)
    except ValueError as exc:
        raise DeepnotesError(f"--torchrun {text!r}: {exc} (expected torchrun's options, quoted "
                             "as in a shell)") from None


def _without_launch_options(argv: list[str]) -> list[str]:
    """The command line minus --nproc N and --torchrun ARGS (the ranks run the rest)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--nproc", "--torchrun"):
            skip = True
        elif not a.startswith(("--nproc=", "--torchrun=")):
            out.append(a)
    return out


def _run(args) -> int:
    from deepnotes.cli.evaluate import print_table
    from deepnotes.errors import DeepnotesError
    from deepnotes.runs import training
    from deepnotes.runs.config import RunConfig, read_config

    explicit = explicit_options(args, RunConfig.options())
    if args.more_epochs is not None and not args.resume:
        raise DeepnotesError(f"--more-epochs {args.more_epochs}: needs --resume RUN (the run to "
                             "train longer)")
    if args.resume:
        run_dir = Path(args.resume)
        result = training.resume(run_dir, explicit, args.allow_changes, progress=args.progress,
                                 more_epochs=args.more_epochs)
    else:
        run_dir, result = training.start(explicit, args.out, args.name, args.overwrite,
                                         progress=args.progress)
    if result is not None:  # rank 0 reports
        print_table(result, read_config(run_dir).task.unit)  # a tagger's counts are tokens
        print(f"run folder: {run_dir}")
    return 0


def explicit_options(args, options: list[str]) -> dict:
    """{config field: value} of the ``options`` given on the command line (every option defaults
    to None; an option's name is its RunConfig field), impossible numbers refused
    (``check_numbers``)."""
    explicit = {name: getattr(args, name) for name in options
                if getattr(args, name, None) is not None}
    check_numbers(explicit)
    check_conflicts(explicit)
    return explicit


def check_conflicts(options: dict) -> None:
    """Refuse options that contradict each other, or that the data given cannot use."""
    from deepnotes.data import idx
    from deepnotes.errors import DeepnotesError

    if options.get("bf16") and options.get("precision") not in (None, "bf16"):
        raise DeepnotesError(f"--bf16 and --precision {options['precision']}: give one (--bf16 "
                             "is --precision bf16)")
    if options.get("class_weights") is not None and options.get("targets"):
        raise DeepnotesError("--class-weights and --targets: class weights weigh one label an "
                             "example, and a multi-task run has one a task")
    data = str(options.get("data", ""))
    if "label_column" in options and data and not data.lower().endswith(".csv"):
        raise DeepnotesError(f"--label-column {options['label_column']}: names a column of a "
                             f"CSV file, and --data {data} is not one")
    if "data_dir" in options and data and data.strip().lower() not in idx.CLASSES:
        raise DeepnotesError(f"--data-dir {options['data_dir']}: the folder of fashion-mnist's "
                             f"or mnist's IDX files, and --data is {data}")


def check_numbers(options: dict) -> None:
    """Refuse impossible numbers before any work."""
    from deepnotes.errors import check_range
    from deepnotes.optim import check_lr

    for key in ("epochs", "batch_size", "max_len", "seq_len", "min_count", "image_size",
                "early_stop"):
        if options.get(key) is not None:
            check_range(f"--{key.replace('_', '-')}", options[key], 1,
                        MAX_SIDE if key == "image_size" else COUNT, integer=True)
    if options.get("lr") is not None:
        check_lr(options["lr"])
    if options.get("beta") is not None:
        check_range("--beta", options["beta"], 0, 1, high_open=True)
    for key in ("weight_decay", "min_delta", "eps"):
        if options.get(key) is not None:
            check_range(f"--{key.replace('_', '-')}", options[key], 0)
    if options.get("train_dev") is not None:
        check_range("--train-dev", options["train_dev"], 0, 1, high_open=True,
                    hint="a share, e.g. 0.05")
    if options.get("seed") is not None:
        check_range("--seed", options["seed"], 0, Batches.MAX_SEED, integer=True)
