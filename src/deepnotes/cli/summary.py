"""``deepnotes summary MODEL``: layer by layer, n_H x n_W x n_C, f, p, s, parameters, MACs."""

from __future__ import annotations

import json
import re

from deepnotes.errors import DeepnotesError, check_range
from deepnotes.train.schema import WIDTH


def add_parser(sub) -> None:
    from deepnotes.models import list_models

    p = sub.add_parser(
        "summary", help="print a model's layers: shapes, f, p, s, parameters, multiply-adds",
        description="One row per layer, from a forward pass of a zero input: output shape as "
        "n_H x n_W x n_C, filter size f, padding p, stride s, parameters and multiply-adds "
        "(MACs) for one example; totals at the bottom.")
    p.add_argument("model", metavar="MODEL", help=f"network: {', '.join(list_models())}")
    p.add_argument("--input", help="input shape: C x H x W for an image model, such as 3x224x224 "
                   "or 3,224,224 (default: 1 x the model's size); n_x features for a table model")
    p.add_argument("--num-classes", type=int, default=10, help="classes of the output layer (10)")
    p.add_argument("--json", action="store_true", help="print the rows and totals as JSON")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepnotes.models import check_side, create_model, model_class
    from deepnotes.models.summary import format_table, notation, summarize, totals

    cls = model_class(args.model)
    check_range("--num-classes", args.num_classes, 2, WIDTH, integer=True)
    if getattr(cls, "sequence", False):
        raise DeepnotesError(f"summary {args.model}: a sequence model; summary covers the image "
                             "and table models (layer shapes as n_H x n_W x n_C)")
    shape = input_shape(args.model, cls, args.input)
    for side in sorted(set(shape[1:])):  # n_H and n_W of an image model's input
        check_side(args.model, side, f"--input {args.input}")
    model = create_model(args.model, num_classes=args.num_classes, in_channels=shape[0])
    rows = summarize(model, shape)
    total = totals(rows, model)
    if args.json:
        print(json.dumps({"model": args.model, "input": list(shape), "layers": rows,
                          "totals": total}, indent=1))
        return 0
    print(f"{args.model}: input {notation(shape)}, {args.num_classes} classes")
    print(format_table(rows, total))
    return 0


def input_shape(name: str, cls, text: str | None) -> tuple[int, ...]:
    """The shape without the batch axis: (n_C, n_H, n_W) for images, (n_x,) for tables."""
    table = getattr(cls, "input_kind", "image") == "table"
    if text is None:
        size = getattr(cls, "input_size", None)
        if table or size is None:
            what = "N, the number of features n_x" if table else "C x H x W such as 3x224x224"
            raise DeepnotesError(f"{name} has no fixed input size: give --input {what}")
        return (1, size, size)
    return parse_input(text, table)


def parse_input(text: str, table: bool = False) -> tuple[int, ...]:
    """``"3x224x224"``, ``"3,224,224"`` or ``"3 x 224 x 224"`` -> (3, 224, 224); ``"30"`` -> (30,)
    for a table model."""
    parts = [part.strip() for part in re.split(r"[x,×]", text.strip().lower())]
    want = 1 if table else 3
    if len(parts) != want or not all(part.isdigit() and int(part) > 0 for part in parts):
        expected = ("the number of features n_x such as 30" if table
                    else "C x H x W such as 3x224x224")
        raise DeepnotesError(f"--input {text!r}: expected {expected}")
    return tuple(int(part) for part in parts)
