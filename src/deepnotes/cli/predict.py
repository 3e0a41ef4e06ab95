"""``deepnotes predict RUN INPUT...``: each example's top-k classes with softmax probabilities:
images for an image run, CSV rows for a table run, texts for a text classifier."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    from deepnotes.cli.train import add_channels_option

    p = sub.add_parser("predict", help="classify images, table rows or texts with a trained run",
                       description="Print the k most probable classes of each example; the "
                       "softmax probabilities are in (0, 1) and sum to 1 over all classes. "
                       "INPUT: image files for a run on images; CSV files with the training "
                       "columns (the label column optional, ignored) for a run on a table; "
                       "text files (one text a line) or CSV files with a 'text' column for a "
                       "text classifier.")
    p.add_argument("run", metavar="RUN", help="run folder written by deepnotes train")
    p.add_argument("inputs", metavar="INPUT", nargs="+",
                   help="image files (PNG, JPEG, ...), CSV files or text files")
    p.add_argument("--top-k", type=int, default=3, help="how many classes to show (3)")
    add_channels_option(p, "the run's; images are always converted to what the run reads")
    p.add_argument("--invert", action="store_true",
                   help="images: flip each, x -> 255 - x (a dark digit drawn on white, for a run "
                   "trained on light digits on black)")
    p.add_argument("--out", metavar="FILE.csv",
                   help="also write input,class,probability (the most probable class of each "
                   "example) to FILE.csv")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (auto)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepnotes.runs.predict import check_out, input_ids, predict, write_csv

    out = check_out(args.out, args.inputs) if args.out else None  # before any work
    predictions = predict(args.run, args.inputs, top_k=args.top_k, device=args.device,
                          channels=args.channels, invert=args.invert)
    if out is not None:
        write_csv(out, predictions)
    if args.json:
        print(json.dumps(predictions, indent=1))
        return 0
    for name, item in zip(input_ids(predictions), predictions):
        ranked = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in item["top"])
        print(f"{name}: {ranked}")
    return 0
