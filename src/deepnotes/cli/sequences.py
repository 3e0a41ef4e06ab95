"""``deepnotes generate RUN`` (sample text from a character language model) and ``deepnotes
translate RUN TEXT...`` (decode with an encoder-decoder, greedy or beam search)."""

from __future__ import annotations

import json

from deepnotes.device import MAX_SEED
from deepnotes.errors import DeepnotesError, check_range
from deepnotes.train.schema import COUNT


def add_parser(sub) -> None:
    g = sub.add_parser("generate", help="sample text from a character language model run",
                       description="One-to-many: feed the model its own samples, one character at "
                       "a time, drawn from softmax(z / temperature).")
    g.add_argument("run", metavar="RUN", help="run folder of --model charlm on a .txt file")
    g.add_argument("--length", type=int, default=200, help="characters to write (200)")
    g.add_argument("--temperature", type=float, default=0.8,
                   help="below 1: safer, more repetitive text; above 1: wilder (0.8)")
    g.add_argument("--prefix", default="", help="text to start from (default: a newline)")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampling (0)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (auto)")
    g.set_defaults(handler=generate)
    t = sub.add_parser("translate", help="decode texts with an encoder-decoder run",
                       description="Many-to-many, Tx != Ty: the encoder reads each TEXT, the "
                       "decoder writes its output (e.g. a date as ISO 8601).")
    t.add_argument("run", metavar="RUN", help="run folder of --model seq2seq")
    t.add_argument("texts", metavar="TEXT", nargs="+", help="source texts")
    t.add_argument("--beam", type=int, default=1, help="beam width; 1 is greedy (1)")
    t.add_argument("--max-length", type=int, default=None,
                   help="longest output (default: the training targets' length)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (auto)")
    t.add_argument("--json", action="store_true", help="print source/output pairs as JSON")
    t.set_defaults(handler=translate)


def load_sequence_run(run: str, kind: str, command: str, device: str):
    """(config, model on ``device``, input vocabulary, output vocabulary) of a run of ``kind``."""
    from deepnotes.device import resolve_device
    from deepnotes.runs.config import read_config
    from deepnotes.runs.folder import load_trained, read_vocab

    config = read_config(run)
    if config.kind != kind:
        need = {"lm": "a character language model (--model charlm on a .txt file)",
                "pairs": "an encoder-decoder (--model seq2seq on dates or a .tsv)"}[kind]
        raise DeepnotesError(f"{run}: a run on {config.kind} data; {command} needs {need}")
    inputs, outputs = read_vocab(run, config)
    model = load_trained(run, config).to(resolve_device(device)).eval()
    return config, model, inputs, outputs


def encode(text: str, vocab: list[str]) -> list[int]:
    """Characters -> ids; a character the run never saw becomes <unk> (1)."""
    index = {token: i for i, token in enumerate(vocab)}
    return [index.get(ch, 1) for ch in text]


def generate(args) -> int:
    import torch

    if args.length < 1:
        raise DeepnotesError(f"--length {args.length}: expected at least 1")
    if not 0 < args.temperature < float("inf"):
        raise DeepnotesError(f"--temperature {args.temperature}: expected a number > 0")
    check_range("--seed", args.seed, 0, MAX_SEED, integer=True)
    _, model, vocab, _ = load_sequence_run(args.run, "lm", "generate", args.device)
    prefix = encode(args.prefix or "\n", vocab)
    ids = model.generate(prefix, args.length, args.temperature,
                         torch.Generator().manual_seed(args.seed))
    print(args.prefix + "".join(vocab[i] if i > 1 else "" for i in ids))
    return 0


def translate(args) -> int:
    import torch

    from deepnotes.models.sequence import strip_output

    check_range("--beam", args.beam, 1, integer=True)
    if args.max_length is not None:
        check_range("--max-length", args.max_length, 1, COUNT, integer=True)
    config, model, vocab, outputs = load_sequence_run(args.run, "pairs", "translate",
                                                      args.device)
    max_len = args.max_length or config.input_shape[-1] + 16
    device = model.head.weight.device
    results = []
    for text in args.texts:
        x = torch.tensor([encode(text, vocab) or [1]], device=device)
        ids = (model.beam(x, max_len, args.beam) if args.beam > 1
               else model.greedy(x, max_len)[0].tolist())
        results.append({"source": text,
                        "output": "".join(outputs[i] for i in strip_output(ids))})
    if args.json:
        print(json.dumps(results, indent=1, ensure_ascii=False))
    else:
        for r in results:
            print(f"{r['source']}\t{r['output']}")
    return 0
