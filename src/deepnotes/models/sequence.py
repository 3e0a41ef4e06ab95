"""The notes' RNN shapes as models (one-to-one is the MLP for tables).

``rnn`` / ``gru`` / ``lstm``  many-to-one: read a sequence, one label at the end: x<1..Tx> -> y.
                              The data decides the input: image rows (28 steps of 28 pixels for
                              Fashion-MNIST) or tokens of a text CSV.
``charlm``                    one-to-many: a character language model; fed y<t-1> it predicts
                              y<t>, so sampling from it writes text.
``tagger``                    many-to-many, Tx = Ty: one tag a token, from a bidirectional LSTM.
``seq2seq``                   many-to-many, Tx != Ty: an encoder reads x<1..Tx>, a decoder writes
                              y<1..Ty> (with attention over the encoder's a<t>).

Token id 0 is padding everywhere; a sequence's length is its number of non-zero ids.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepnotes.data.vocabulary import BOS_ID as BOS
from deepnotes.data.vocabulary import EOS_ID as EOS
from deepnotes.errors import DeepnotesError
from deepnotes.models.network import Network
from deepnotes.nn.recurrent import GRU, LSTM, RNN

LAYERS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
# the cell variants (--rnn-cell), by layer: the layer's keyword options for each
RNN_CELLS = {"gru": {"full": {}, "simplified": {"full": False},
                     "reset-after": {"reset_after": True}},
             "lstm": {"tanh": {}, "slide": {"output_tanh": False}}}


def cell_options(layer: str, variant: str | None) -> dict:
    """The options of ``layer``'s cells for ``variant`` (GRU: full, the notes' GRU with Gamma_r;
    simplified, without it; reset-after, cuDNN's. LSTM: tanh, a<t> = Gamma_o * tanh(c<t>);
    slide, a<t> = Gamma_o * c<t>); None: the layer's default."""
    if variant is None:
        return {}
    if variant not in RNN_CELLS.get(layer, {}):
        kinds = RNN_CELLS.get(layer)
        choices = f"its cells are {', '.join(kinds)}" if kinds else "it has no cell variants"
        raise DeepnotesError(f"--rnn-cell {variant}: not a variant of the {layer.upper()} "
                             f"layer ({choices})")
    return RNN_CELLS[layer][variant]


def lengths_of(x: torch.Tensor) -> torch.Tensor:
    """Tx of each padded sequence of ids (B, T): its count of non-pad ids, at least 1."""
    return (x != 0).sum(1).clamp_min(1)


class SequenceClassifier(Network):
    """Many-to-one: a<t> = RNN(a<t-1>, x<t>) over the sequence, y_hat = softmax(W_y a<Tx> + b_y).

    For images, step t reads row t of the image (n_C * n_W numbers); for text, step t reads the
    embedding of token t. Bidirectional: the forward a<Tx> and the backward a<1> side by side.
    """

    input_kind = ("image", "tokens")
    input_size = 28  # images are resized to 28 x 28: 28 steps of 28 pixels
    sequence = True
    takes_rnn_cell = True  # --rnn-cell: the variants of its cells
    head: nn.Linear

    def __init__(self, num_classes: int = 10, in_channels: int = 1, cell: str = "lstm",
                 task: str = "image", hidden_size: int = 128, embedding_dim: int = 64,
                 num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0,
                 rnn_cell: str | None = None):
        super().__init__()
        self.task, self.directions = task, 2 if bidirectional else 1
        if task == "image":
            self.embed, n_x = None, in_channels * self.input_size
        else:
            self.embed = nn.Embedding(in_channels, embedding_dim, padding_idx=0)
            n_x = embedding_dim
        self.rnn = LAYERS[cell](n_x, hidden_size, num_layers=num_layers,
                                bidirectional=bidirectional, batch_first=True, dropout=dropout,
                                **cell_options(cell, rnn_cell))
        self.head = nn.Linear(hidden_size * self.directions, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last state a<Tx> (both directions' when bidirectional) the head reads."""
        if self.embed is None:  # (B, n_C, n_H, n_W) -> (B, n_H steps, n_C * n_W)
            _, state = self.rnn(x.permute(0, 2, 1, 3).flatten(2))
        else:
            _, state = self.rnn(self.embed(x), lengths=lengths_of(x))
        h = state[0] if isinstance(state, tuple) else state  # (layers * D, B, n_a)
        return h[-self.directions:].transpose(0, 1).flatten(1)  # (B, D * n_a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CharLM(Network):
    """One-to-many: y_hat<t> = softmax(W_y a<t> + b_y), a<t> = LSTM(a<t-1>, x<t>) with x<t> =
    y<t-1>: trained to predict each next character, it writes text when fed its own samples."""

    input_kind = ("lm",)
    input_size = None
    sequence = True
    takes_rnn_cell = True  # --rnn-cell: the variants of its cells
    head: nn.Linear

    def __init__(self, num_classes: int = 64, in_channels: int = 64, task: str = "lm",
                 hidden_size: int = 256, embedding_dim: int = 64, num_layers: int = 2,
                 dropout: float = 0.1, rnn_cell: str | None = None):
        super().__init__()
        self.embed = nn.Embedding(in_channels, embedding_dim)
        self.rnn = LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                        dropout=dropout, **cell_options("lstm", rnn_cell))
        self.head = nn.Linear(hidden_size, num_classes)

    def features(self, x: torch.Tensor, state=None) -> torch.Tensor:
        """a<1..T> for ids x (B, T) from ``state``: (B, T, n_a), what the head reads."""
        return self.rnn(self.embed(x), state)[0]

    def forward(self, x: torch.Tensor, state=None) -> torch.Tensor:
        return self.step(x, state)[0]  # (B, T, V)

    def step(self, x: torch.Tensor, state=None):
        """Logits for ids x (B, T) from ``state``, and the state after them."""
        out, state = self.rnn(self.embed(x), state)  # a<1..T>: (B, T, n_a)
        return self.head(out), state

    @torch.no_grad()
    def generate(self, prefix: list[int], length: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> list[int]:
        """``length`` ids sampled one at a time from softmax(z / temperature), after ``prefix``.
        Temperature below 1 sharpens the distribution (safer text), above 1 flattens it."""
        self.eval()
        device = self.head.weight.device
        logits, state = self.step(torch.tensor([prefix], device=device))
        out = []
        for _ in range(length):
            z = logits[0, -1].double()  # float64: a temperature of 1e-300 stays above 0
            p = torch.softmax((z - z.max()) / temperature, -1)  # finite for any temperature > 0
            nxt = int(torch.multinomial(p.cpu(), 1, generator=generator))
            out.append(nxt)
            logits, state = self.step(torch.tensor([[nxt]], device=device), state)
        return out


class Tagger(Network):
    """Many-to-many with Tx = Ty: a bidirectional LSTM reads the whole sentence, so the tag of
    token t sees the words before and after it; y_hat<t> = softmax(W_y [a->, a<-]<t> + b_y)."""

    input_kind = ("tags",)
    input_size = None
    sequence = True
    takes_rnn_cell = True  # --rnn-cell: the variants of its cells
    head: nn.Linear

    def __init__(self, num_classes: int = 2, in_channels: int = 2, task: str = "tags",
                 hidden_size: int = 128, embedding_dim: int = 64, num_layers: int = 1,
                 rnn_cell: str | None = None):
        super().__init__()
        self.embed = nn.Embedding(in_channels, embedding_dim, padding_idx=0)
        self.rnn = LSTM(embedding_dim, hidden_size, num_layers=num_layers, bidirectional=True,
                        batch_first=True, **cell_options("lstm", rnn_cell))
        self.head = nn.Linear(2 * hidden_size, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[a->, a<-]<1..T> for ids x (B, T): (B, T, 2 n_a), what the head reads for each token."""
        return self.rnn(self.embed(x), lengths=lengths_of(x))[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, T, K)


class Seq2Seq(Network):
    """Many-to-many with Tx != Ty: an encoder-decoder.

    The encoder, a bidirectional LSTM, turns x<1..Tx> into a<1..Tx>. The decoder, an LSTM started
    from the encoder's final states, reads y<t-1> (teacher forcing: the true previous output in
    training, its own in decoding) and at each step attends over the a<t'>:
    alpha<t,t'> = softmax_t'(s<t> . W a<t'>), context<t> = sum_t' alpha<t,t'> a<t'>,
    y_hat<t> = softmax(W_y tanh(W_c [s<t>, context<t>])).

    ``features(x, y_in)`` is what the head reads, tanh(W_c [s<t>, context<t>]) for each decoder
    step under teacher forcing: it needs the decoder's inputs y_in, as ``forward`` does, and
    head(features(x, y_in)) = forward(x, y_in).
    """

    input_kind = ("pairs",)
    input_size = None
    sequence = True
    head: nn.Linear

    def __init__(self, num_classes: int = 8, in_channels: int = 8, task: str = "pairs",
                 hidden_size: int = 128, embedding_dim: int = 32):
        super().__init__()
        n_a = hidden_size
        self.embed_x = nn.Embedding(in_channels, embedding_dim, padding_idx=0)
        self.encoder = LSTM(embedding_dim, n_a, bidirectional=True, batch_first=True)
        self.bridge = nn.Linear(2 * n_a, 2 * n_a)  # encoder's final [a->, a<-] -> decoder's (a, c)
        self.embed_y = nn.Embedding(num_classes, embedding_dim, padding_idx=0)
        self.decoder = LSTM(embedding_dim, n_a, batch_first=True)
        self.attend = nn.Linear(2 * n_a, n_a, bias=False)
        self.combine = nn.Linear(3 * n_a, n_a)
        self.head = nn.Linear(n_a, num_classes)

    def encode(self, x: torch.Tensor):
        """(a<1..Tx> projected for attention, the values a<t>, the source mask, decoder state)."""
        a, (h, c) = self.encoder(self.embed_x(x), lengths=lengths_of(x))
        final = torch.cat([h[-2], h[-1]], 1)  # (B, 2 n_a)
        s0, c0 = torch.tanh(self.bridge(final)).chunk(2, 1)
        return self.attend(a), a, x != 0, (s0.unsqueeze(0).contiguous(),
                                            c0.unsqueeze(0).contiguous())

    def attend_steps(self, memory, y_in: torch.Tensor, state):
        """tanh(W_c [s<t>, context<t>]) for decoder inputs y_in (B, T): (B, T, n_a), what the
        head reads, and the decoder state after them."""
        keys, values, mask = memory
        s, state = self.decoder(self.embed_y(y_in), state)  # s<t>: (B, T, n_a)
        scores = s @ keys.transpose(1, 2)  # (B, T, Tx)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        context = torch.softmax(scores, -1) @ values  # (B, T, 2 n_a)
        return torch.tanh(self.combine(torch.cat([s, context], -1))), state

    def decode_steps(self, memory, y_in: torch.Tensor, state):
        """Logits for decoder inputs y_in (B, T) and the decoder state after them."""
        out, state = self.attend_steps(memory, y_in, state)
        return self.head(out), state  # (B, T, V)

    def features(  # type: ignore[override]  # needs the decoder's inputs too (see above)
            self, x: torch.Tensor, y_in: torch.Tensor) -> torch.Tensor:
        """(B, Tx) sources and (B, T) decoder inputs (teacher forcing) -> (B, T, n_a)."""
        keys, values, mask, state = self.encode(x)
        return self.attend_steps((keys, values, mask), y_in, state)[0]

    def forward(self, x: torch.Tensor, y_in: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x, y_in))  # (B, T, V)

    @torch.no_grad()
    def greedy(self, x: torch.Tensor, max_len: int) -> torch.Tensor:
        """The most likely next id at each step, fed back in: ids (B, <= max_len), <eos> ends."""
        self.eval()
        keys, values, mask, state = self.encode(x)
        y = torch.full((len(x), 1), BOS, dtype=torch.long, device=x.device)
        out = []
        for _ in range(max_len):
            logits, state = self.decode_steps((keys, values, mask), y, state)
            y = logits[:, -1].argmax(-1, keepdim=True)
            out.append(y)
            if (torch.cat(out, 1) == EOS).any(1).all():
                break
        return torch.cat(out, 1)

    @torch.no_grad()
    def beam(self, x: torch.Tensor, max_len: int, width: int = 4) -> list[int]:
        """Beam search for one source (1, Tx): keep the ``width`` best partial outputs by total
        log-probability; a finished one (ending in <eos>) is scored by its length-normalised
        log-probability."""
        self.eval()
        keys, values, mask, state = self.encode(x)
        beams = [(0.0, [BOS], state)]
        done: list[tuple[float, list[int], Any]] = []  # (score, ids, decoder state)
        for _ in range(max_len):
            grown = []
            for score, ids, st in beams:
                logits, st2 = self.decode_steps((keys, values, mask),
                                                torch.tensor([[ids[-1]]], device=x.device), st)
                logp = torch.log_softmax(logits[0, -1].float(), -1)
                top = logp.topk(min(width, logp.numel()))  # a beam wider than the vocabulary
                for lp, i in zip(top.values.tolist(), top.indices.tolist()):
                    grown.append((score + lp, ids + [i], st2))
            grown.sort(key=lambda b: -b[0])
            beams = []
            for b in grown[:width]:
                (done if b[1][-1] == EOS else beams).append(b)
            if not beams:
                break
        finished = done or beams
        best = max(finished, key=lambda b: b[0] / (len(b[1]) - 1))
        return best[1][1:]


def strip_output(ids: list[int]) -> list[int]:
    """An output sequence up to (not including) <eos>, without padding."""
    out = []
    for i in ids:
        if i == EOS:
            break
        if i > EOS or i == 1:  # a token or <unk>
            out.append(i)
    return out


@torch.no_grad()
def exact_match(model: Seq2Seq, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """The share of sources whose greedy decoding is exactly the target y<1..Ty> (up to <eos>)."""
    hits = 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        guess = model.greedy(xb, max_len=yb.shape[1]).tolist()
        hits += sum(strip_output(g) == strip_output(t[1:]) for g, t in zip(guess, yb.tolist()))
    return hits / max(1, len(x))
