"""Vocabularies: tokens to ids and back, for the sequence models' inputs and outputs.

The specials come first: ``<pad>`` = 0 and ``<unk>`` = 1 in every vocabulary, and ``<bos>`` = 2,
``<eos>`` = 3 in a target vocabulary; then the tokens by count (most frequent first), ties by
the token itself, so the same data always gives the same ids. Tokens seen fewer than
``min_count`` times are left out and read as ``<unk>``. A run saves its vocabularies as
``vocab.json`` (:meth:`Vocabulary.to_json`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from deepnotes.data.dataset import IGNORE
from deepnotes.errors import DeepnotesError, check_range

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
INPUT_SPECIALS = (PAD, UNK)
TARGET_SPECIALS = (PAD, UNK, BOS, EOS)


class Vocabulary:
    """Tokens by id: the specials first, then the rest by count descending, then by token."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise DeepnotesError("vocabulary: duplicate tokens")
        if self.tokens[:2] != list(INPUT_SPECIALS):
            raise DeepnotesError(f"vocabulary: must start with {PAD!r}, {UNK!r}")

    @classmethod
    def build(cls, counts: Counter | Iterable[str], min_count: int = 1,
              target: bool = False) -> Vocabulary:
        """From token counts (or an iterable of tokens); ``target`` adds ``<bos>``, ``<eos>``."""
        check_range("min_count", min_count, 1, integer=True)
        counts = counts if isinstance(counts, Counter) else Counter(counts)
        specials = TARGET_SPECIALS if target else INPUT_SPECIALS
        kept = [t for t, c in counts.items() if c >= min_count and t not in specials]
        kept.sort(key=lambda t: (-counts[t], t))
        return cls([*specials, *kept])

    @property
    def is_target(self) -> bool:
        return self.tokens[:4] == list(TARGET_SPECIALS)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of the tokens; an unknown token is ``<unk>`` (1)."""
        return [self.index.get(token, UNK_ID) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of the ids, stopping at ``<eos>``; ``<pad>``, ``<bos>`` and IGNORE skipped."""
        skip = {PAD_ID, BOS_ID} if self.is_target else {PAD_ID}
        out = []
        for i in (int(i) for i in ids):
            if self.is_target and i == EOS_ID:
                break
            if i in skip or i == IGNORE:
                continue
            if not 0 <= i < len(self.tokens):
                raise DeepnotesError(f"vocabulary: id {i} out of range [0, {len(self) - 1}]")
            out.append(self.tokens[i])
        return out

    def to_json(self) -> dict:
        """A JSON-ready dict (``json.dumps`` it): ``{"tokens": [...]}``, ids are positions."""
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, data: dict | str) -> Vocabulary:
        """The inverse of :meth:`to_json`; also accepts the JSON text itself."""
        if isinstance(data, str):
            data = json.loads(data)
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DeepnotesError('vocabulary: expected JSON {"tokens": [strings]}')
        return cls(tokens)


def teacher_forcing(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs ``y[:, :-1]`` (IGNORE -> ``<pad>``) and targets ``y[:, 1:]`` of pairs."""
    inputs = y[:, :-1]
    return inputs.masked_fill(inputs == IGNORE, PAD_ID), y[:, 1:]


def pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Rows of ids as an int64 (m, T) tensor, T the longest row, padded with ``value``."""
    width = max(len(row) for row in rows)
    return torch.tensor([[*row, *[value] * (width - len(row))] for row in rows],
                        dtype=torch.int64)
