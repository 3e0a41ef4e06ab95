"""``deepnotes export RUN [--format onnx] [--out FILE]``: the run's model for a deployment."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="write a run's model as an ONNX graph (uint8 images in, probabilities out)",
        description="Export the run's kept model to ONNX: the graph takes uint8 images (N, C, H, "
        "W) at the run's input size (float features for a table, int64 token ids for text, "
        "padded with 0 to the run's length), "
        "any batch size, normalises them as training did and outputs the class probabilities. "
        "The file is checked with onnx.checker and against ONNX Runtime before it is written. "
        "Needs pip install 'deepnotes[onnx]'.")
    p.add_argument("run", metavar="RUN", help="the run folder")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="(onnx)")
    p.add_argument("--out", metavar="FILE", help="where to write it (RUN/model.onnx)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from deepnotes.errors import DeepnotesError
    from deepnotes.runs.config import read_config
    from deepnotes.runs.export import export_onnx
    from deepnotes.runs.folder import load_trained

    config = read_config(args.run)
    out = Path(args.out) if args.out else Path(args.run) / "model.onnx"
    if not out.parent.is_dir():
        raise DeepnotesError(f"--out {out}: no folder {out.parent} to write it in")
    if out.is_dir():
        raise DeepnotesError(f"--out {out}: a folder; expected a file name such as "
                             f"{out / 'model.onnx'}")
    model = load_trained(args.run, config)
    export_onnx(model, config, out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): input {config.kind} "
          f"(N, {', '.join(map(str, config.input_shape))}), output probabilities (N, "
          f"{len(config.classes)})")
    return 0
