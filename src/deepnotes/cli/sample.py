"""``deepnotes sample NAME [--out DIR]``: the README tour's small inputs, written offline."""

from __future__ import annotations

DESCRIPTION = """\
Write small sample inputs for the README's tour from data already on this machine (nothing is
downloaded). NAME is a sample, a file it writes, or all:
  digits           my_images/ (30 PNGs of each digit 0-9), my_digit.png and drawn_on_paper.png
                   (black on white): scikit-learn's handwritten digits, 8x8 grey
  iris             measurements.csv (the label in the species column) and new_rows.csv (6 rows
                   held out, no label): scikit-learn's iris
  scenes           scenes.csv: features x1..x8 and pedestrian,car,stop_sign,traffic_light
                   (0, 1 or empty), set by fixed rules on random features, 20% missing
  reviews          reviews.csv (text,label) and new_reviews.txt (10 held out, one a line):
                   Pang and Lee's movie-review sentences, gensim's copy (pip install gensim)
  text             my_book.txt: 200 KB of English, from GCIDE's dictionary if Debian's
                   dict-gcide is installed (/usr/share/dictd), else gensim's Lee news corpus if
                   gensim is, else Python's own language reference (pydoc_data)
  corpus           corpus.txt: the same text as lower-case words, a sentence a line (Word2Vec)
  questions-words  questions-words.txt: word2vec's analogy questions, gensim's copy
                   (pip install gensim)
all writes every one; without gensim it leaves out reviews and questions-words, saying so.
Each file is written atomically; existing files are replaced only with --overwrite."""


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("sample", help="write the README tour's sample inputs (offline)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME",
                   help="digits, iris, scenes, reviews, text, corpus, questions-words, a file "
                   "one of them writes (measurements.csv, ...), or all")
    p.add_argument("--out", default=".", metavar="DIR", help="folder to write into (.)")
    p.add_argument("--overwrite", action="store_true", help="replace files that exist")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepnotes.data.samples import write_samples

    for line in write_samples(args.name, args.out, overwrite=args.overwrite):
        print(line)
    return 0
