"""``deepnotes predict RUN IMAGE...``: each image's top-k classes with softmax probabilities."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="classify images with a trained run",
                       description="Print the k most probable classes of each image; the softmax "
                       "probabilities are in (0, 1) and sum to 1 over all classes.")
    p.add_argument("run", metavar="RUN", help="run folder written by deepnotes train")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top-k", type=int, default=3, help="how many classes to show (3)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (auto)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.set_defaults(handler=run)


def run(args) -> int:
    import torch

    from deepnotes.data import Normalizer
    from deepnotes.data.images import load_image
    from deepnotes.device import resolve_device
    from deepnotes.errors import DeepnotesError
    from deepnotes.runs.config import read_config
    from deepnotes.runs.folder import load_trained

    config = read_config(args.run)
    if config.kind != "image":
        instead = {"lm": "deepnotes generate RUN", "pairs": "deepnotes translate RUN TEXT"}.get(
            config.kind, "deepnotes evaluate RUN --data FILE")
        raise DeepnotesError(f"{args.run}: this run was trained on {config.kind} data, "
                             f"not images; use {instead}")
    if args.top_k < 1:
        raise DeepnotesError(f"--top-k {args.top_k}: expected at least 1")
    device = resolve_device(args.device)
    model = load_trained(args.run, config).to(device).eval()
    n_c, size = config.input_shape[0], config.input_shape[-1]
    x = torch.stack([load_image(path, size, n_c) for path in args.images])  # (m, n_C, n_H, n_W)
    with torch.inference_mode():
        probs = torch.softmax(model(Normalizer.from_dict(config.normalize)(x.to(device))), 1)
    k = min(args.top_k, probs.shape[1])
    top = probs.float().cpu().topk(k, dim=1)
    out = [{"image": path, "top": [{"class": config.classes[int(i)], "probability": float(p)}
                                   for p, i in zip(top.values[n], top.indices[n])]}
           for n, path in enumerate(args.images)]
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for item in out:
            ranked = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in item["top"])
            print(f"{item['image']}: {ranked}")
    return 0
