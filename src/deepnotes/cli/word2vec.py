"""``deepnotes word2vec train|similar|analogy|evaluate``: word embeddings from the notes' Word2Vec.

VECTORS ending in ``.bin`` are the word2vec C tool's binary format, ``.txt`` its text format (both
load in gensim and the C tool); any other name is deepnotes' own (safetensors + vocabulary JSON),
which ``train --out`` writes for a name ending in ``.safetensors``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from deepnotes.errors import DeepnotesError, check_range

SUFFIXES = {".bin": "C binary", ".txt": "C text", ".safetensors": "deepnotes"}


def add_parser(sub) -> None:
    w2v = sub.add_parser("word2vec", help="train and query word embeddings (skip-gram, CBOW)",
                         description="Word2Vec from the notes: skip-gram predicts the context from "
                         "a word, CBOW the word from the mean of its context; negative "
                         "sampling, from the course.")
    commands = w2v.add_subparsers(dest="word2vec_command", metavar="COMMAND",
                                  parser_class=type(w2v))  # one-line errors, as everywhere
    _train_parser(commands)
    similar = commands.add_parser("similar", help="the words closest to WORD (cosine)")
    similar.add_argument("vectors", metavar="VECTORS")
    _errors_option(similar)
    similar.add_argument("word", metavar="WORD")
    similar.add_argument("--topn", type=int, default=10, help="how many (10)")
    similar.set_defaults(handler=run_similar)
    analogy = commands.add_parser("analogy", help="A is to B as C is to ? (3CosAdd)")
    analogy.add_argument("vectors", metavar="VECTORS")
    _errors_option(analogy)
    analogy.add_argument("words", metavar="WORD", nargs=3, help="A B C")
    analogy.add_argument("--topn", type=int, default=5, help="how many answers (5)")
    analogy.set_defaults(handler=run_analogy)
    evaluate = commands.add_parser("evaluate", help="analogy accuracy on a questions-words file")
    evaluate.add_argument("vectors", metavar="VECTORS")
    _errors_option(evaluate)
    evaluate.add_argument("questions", metavar="QUESTIONS",
                          help="questions-words format (': section' lines, then 'a b c d')")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.set_defaults(handler=run_evaluate)
    w2v.set_defaults(handler=lambda args: w2v.print_help() or 0)


def _errors_option(p) -> None:
    p.add_argument("--errors", default="strict", choices=("strict", "replace", "ignore"),
                   help="a C-format file's words that are not UTF-8: stop with the line or "
                        "offset, replace the bad bytes with U+FFFD, or drop them (strict)")


def _train_parser(commands) -> None:
    p = commands.add_parser("train", help="train vectors on a text file",
                            description="Train on CORPUS: UTF-8 text, one sentence a line or one "
                            "long line (text8); words are split on whitespace.")
    p.add_argument("corpus", metavar="CORPUS", help="text file")
    p.add_argument("--out", required=True, metavar="VECTORS",
                   help="where to write: .bin (C binary), .txt (C text) or .safetensors "
                   "(deepnotes' own, with a .vocab.json beside it)")
    p.add_argument("--cbow", action="store_true", help="CBOW instead of skip-gram")
    p.add_argument("--vector-size", type=int, default=100, help="dimensions (100)")
    p.add_argument("--window", type=int, default=5, help="largest context window (5)")
    p.add_argument("--negative", type=int, default=5,
                   help="negative samples a word (5; 0 with --hs: hierarchical softmax alone)")
    p.add_argument("--hs", action="store_true",
                   help="hierarchical softmax over a Huffman tree of the vocabulary")
    p.add_argument("--min-count", type=int, default=5, help="ignore rarer words (5)")
    p.add_argument("--sample", type=float, default=1e-3,
                   help="subsampling threshold of frequent words (1e-3; 0: off)")
    p.add_argument("--alpha", type=float, default=0.025, help="initial learning rate (0.025)")
    p.add_argument("--epochs", type=int, default=5, help="passes over the corpus (5)")
    p.add_argument("--workers", type=int, default=None, help="CPU threads (all)")
    p.add_argument("--seed", type=int, default=1, help="seed (1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (cpu)")
    p.add_argument("--implementation", default="auto",
                   choices=("auto", "hogwild", "triton", "minibatch"),
                   help="hogwild: compiled word2vec.c loop on CPU threads; triton: one kernel a "
                        "chunk on a CUDA GPU; minibatch: torch, any device; auto: hogwild on "
                        "the CPU, triton on a GPU (auto)")
    p.add_argument("--per-pair-negatives", action="store_true",
                   help="skip-gram: new negatives for every (context, centre) pair, exactly as "
                        "word2vec.c (slower); default: shared by a centre's pairs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_train)


def check_train_numbers(args) -> None:
    from deepnotes.embeddings.word2vec import LIMITS, MAX_SEED

    check_range("--negative", args.negative, 0 if args.hs else 1, LIMITS["negative"],
                integer=True, hint="" if args.hs else "0 needs --hs")
    for name in ("vector_size", "window", "min_count", "epochs"):
        check_range(f"--{name.replace('_', '-')}", getattr(args, name), 1, LIMITS[name],
                    integer=True)
    check_range("--sample", args.sample, 0.0, 1.0, high_open=True)
    check_range("--alpha", args.alpha, 0.0, 1.0, low_open=True, high_open=True)
    if args.workers is not None:
        check_range("--workers", args.workers, 1, integer=True)
    check_range("--seed", args.seed, 0, MAX_SEED, integer=True)  # what torch's generator takes
    if not Path(args.corpus).is_file():
        what = "is a folder" if Path(args.corpus).is_dir() else "no such file"
        raise DeepnotesError(f"{args.corpus}: {what}; expected a text file (CORPUS)")


def check_out(out: str) -> None:
    """--out must have a known extension and a folder that can be written, before training."""
    path, folder = Path(out), Path(out).parent
    if path.is_dir():
        raise DeepnotesError(f"--out {out}: is a folder; expected a file name in it")
    if path.suffix.lower() not in SUFFIXES:
        raise DeepnotesError(f"--out {out}: unknown extension {path.suffix!r}; expected "
                             f"{', '.join(f'{k} ({v})' for k, v in SUFFIXES.items())}")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DeepnotesError(f"--out {out}: the folder {folder} {what}; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DeepnotesError(f"--out {out}: the folder {folder} is not writable")


def run_train(args) -> int:
    from deepnotes.embeddings import Word2Vec

    check_train_numbers(args)
    check_out(args.out)
    model = Word2Vec(corpus_file=args.corpus, sg=0 if args.cbow else 1,
                     vector_size=args.vector_size, window=args.window, negative=args.negative,
                     min_count=args.min_count, sample=args.sample, alpha=args.alpha,
                     epochs=args.epochs, workers=args.workers, seed=args.seed,
                     device=args.device, progress=args.progress,
                     implementation=args.implementation, hs=int(args.hs),
                     shared_negatives=not args.per_pair_negatives)
    wv = model.wv
    assert wv is not None  # given a corpus_file, Word2Vec trains at once
    save_vectors(wv, args.out)
    print(f"{len(wv)} words x {wv.vector_size} dimensions -> {args.out}")
    return 0


def save_vectors(wv, path: str) -> None:
    suffix = Path(path).suffix.lower()
    if suffix in (".bin", ".txt"):
        wv.save_word2vec_format(path, binary=suffix == ".bin")
    else:
        wv.save(path)


def load_vectors(path: str, errors: str = "strict"):
    from deepnotes.embeddings import KeyedVectors

    if not Path(path).exists():
        raise DeepnotesError(f"{path}: no such vectors file")
    suffix = Path(path).suffix.lower()
    if suffix in (".bin", ".txt"):
        return KeyedVectors.load_word2vec_format(path, binary=suffix == ".bin", errors=errors)
    return KeyedVectors.load(path)


def _check_topn(topn: int) -> None:
    check_range("--topn", topn, 1, integer=True)


def run_similar(args) -> int:
    _check_topn(args.topn)
    wv = load_vectors(args.vectors, args.errors)
    for word, cosine in wv.most_similar(positive=[args.word], topn=args.topn):
        print(f"{word}\t{cosine:.4f}")
    return 0


def run_analogy(args) -> int:
    _check_topn(args.topn)
    a, b, c = args.words
    wv = load_vectors(args.vectors, args.errors)
    for word, cosine in wv.most_similar(positive=[b, c], negative=[a], topn=args.topn):
        print(f"{word}\t{cosine:.4f}")
    return 0


def run_evaluate(args) -> int:
    wv = load_vectors(args.vectors, args.errors)
    result = wv.evaluate_word_analogies(args.questions)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    width = max([7, *(len(s["section"]) for s in result["sections"])])
    print(f"{'section':<{width}} {'correct':>8} {'answered':>9} {'accuracy':>9}")
    for s in result["sections"]:
        answered = s["correct"] + s["incorrect"]
        print(f"{s['section']:<{width}} {s['correct']:>8} {answered:>9} {s['accuracy']:>9.4f}")
    print(f"overall accuracy {result['accuracy']:.4f} ({result['correct']} of "
          f"{result['correct'] + result['incorrect']} answered); {result['coverage']:.1%} of the "
          f"{result['questions']} questions had all four words in the vocabulary")
    return 0
