"""The recurrent language model: embedding → RNN / GRU / LSTM → linear over the vocabulary.

Optionally character-aware (``NetConfig.compose``): a word's vector is composed from its characters' embeddings,
alone or added to the word's own, so a word seen once or twice in training borrows what the network learned
from every other word that shares its characters (Kim et al. 2016; fastText composes the same way). With tied
weights the output vectors can be the same composition, so a rare word's *score* comes from its characters too.
The spelling of every vocabulary word (character ids) is a buffer of the network, saved with its weights, so a
bundle alone rebuilds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
COMPOSITIONS = ("none", "sum", "mean", "cnn")

# LSTM state is a (hidden, cell) pair; RNN and GRU carry one tensor.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass
class NetConfig:
    """Shape of the network; stored in every bundle so it can be rebuilt without the corpus."""

    vocab_size: int
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 512
    embed: int = 256
    dropout: float = 0.5
    embed_dropout: float = 0.1
    tie_weights: bool = True
    locked_dropout: bool = False  # one dropout mask per sequence for all time steps (variational dropout)
    # Character-aware words. Every default means "off", so a bundle written before these fields existed loads
    # and computes exactly as it did.
    compose: str = "none"  # how a word's characters make its vector: none, sum, mean, cnn (Kim et al.'s CNN + highway)
    chars: int = 0  # rows of the character table (0 pads a spelling)
    spelling_len: int = 0  # columns of the spelling buffer: the longest word's characters
    compose_own: bool = True  # add the word's own embedding to the composition (False: the composition alone)
    compose_output: bool = (
        False  # output vectors composed too: tied, the input vectors; untied, a composer of their own
    )
    word_dropout: float = 0.0  # training: a word type's own embedding dropped, leaving its composition
    char_dropout: float = 0.0  # training: a character type dropped from every composition

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if self.layers < 1 or self.hidden < 1 or self.embed < 1 or self.vocab_size < 2:
            raise ValueError("layers, hidden, embed must be positive and the vocabulary non-trivial")
        if not 0 <= self.dropout < 1 or not 0 <= self.embed_dropout < 1:
            raise ValueError("dropout must be in [0, 1)")
        if self.compose not in COMPOSITIONS:
            raise ValueError(f"compose must be one of {', '.join(COMPOSITIONS)}, not {self.compose!r}")
        if not 0 <= self.word_dropout < 1 or not 0 <= self.char_dropout < 1:
            raise ValueError("word and character dropout must be in [0, 1)")
        if self.composed:
            if self.chars < 2 or self.spelling_len < 1:
                raise ValueError("a composing network needs a character table and spellings (see network.spell)")
            if not self.compose_own and self.tie_weights and not self.compose_output:
                raise ValueError("without own embeddings, tied output vectors must be the composed ones")

    @property
    def composed(self) -> bool:
        """Whether word vectors are built from characters."""
        return self.compose != "none"


class LyricsNet(nn.Module):
    """Word-level recurrent language model.

    With ``tie_weights`` the output layer reuses the embedding matrix (through a projection from the
    hidden size down to the embedding size), which halves the parameters spent on the vocabulary and
    regularises a model trained on a small corpus. With ``compose`` the word vectors are built from the
    characters in ``spelling`` (see ``spell``); ``word_vectors`` is the matrix the network reads its inputs
    from, and ``output_layer`` the one it scores with.
    """

    def __init__(self, config: NetConfig, spelling: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed) if config.compose_own else None
        self.chars: CharComposer | None = None
        if config.composed:
            self.chars = CharComposer(config)
            self.register_buffer("spelling", torch.zeros(config.vocab_size, config.spelling_len, dtype=torch.long))
            if spelling is not None:
                self.set_spelling(spelling)
        elif spelling is not None:
            raise ValueError("a spelling was given to a network that does not compose (NetConfig.compose is none)")
        self.rnn = CELLS[config.cell](
            config.embed,
            config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.decoder: nn.Linear | None = None
        self.output_bias: nn.Parameter | None = None
        self.output_chars: CharComposer | None = None
        if config.tie_weights:
            self.project = nn.Linear(config.hidden, config.embed)
            if config.compose_output:
                # The output vectors are word_vectors(), recomposed at every forward pass: only a bias of its own.
                self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))
            else:
                self.decoder = nn.Linear(config.embed, config.vocab_size)
                self.decoder.weight = self.embedding.weight
        else:
            self.project = None
            self.decoder = nn.Linear(config.hidden, config.vocab_size)
            if config.composed and config.compose_output:
                self.output_chars = CharComposer(config, config.hidden)
        if self.embedding is not None:
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    def set_spelling(self, spelling: torch.Tensor) -> None:
        """Each vocabulary word's character ids, one row per word, 0-padded (``spell`` makes them)."""
        if self.chars is None:
            raise ValueError("this network does not compose words from characters")
        if spelling.shape != self.spelling.shape:
            raise ValueError(f"spelling is {tuple(spelling.shape)}, the network expects {tuple(self.spelling.shape)}")
        if spelling.min() < 0 or spelling.max() >= self.config.chars:
            raise ValueError(f"character ids must be in [0, {self.config.chars})")
        with torch.no_grad():
            self.spelling.copy_(spelling)

    def compose(self, spelling: torch.Tensor) -> torch.Tensor:
        """The composed vectors (rows, embed) of any words spelled in this network's character ids.

        A word the vocabulary lacks, or one training never showed, gets a vector from its characters alone.
        """
        if self.chars is None:
            raise ValueError("this network does not compose words from characters")
        return self.chars(spelling)

    def word_vectors(self) -> torch.Tensor:
        """Every vocabulary word's input vector (vocab, embed); in training with word and character dropout."""
        if self.chars is None:
            return self.embedding.weight
        composed = self.chars(self.spelling)
        if self.embedding is None:
            return composed
        own = self.embedding.weight
        p = self.config.word_dropout
        if self.training and p > 0:
            # Whole-word dropout: some word types are seen through their characters alone this step, so the
            # composition learns to carry a word by itself, as it must for a word seen once or never.
            own = own * (torch.rand(own.size(0), 1, device=own.device) >= p)
        return own + composed

    def output_layer(self, vectors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The output layer's (weight, bias): logits are ``features @ weight.T + bias``."""
        if self.output_chars is not None:
            return self.decoder.weight + self.output_chars(self.spelling), self.decoder.bias
        if self.decoder is not None:
            return self.decoder.weight, self.decoder.bias
        return (self.word_vectors() if vectors is None else vectors), self.output_bias

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout on (batch, time, features); locked: the same features are dropped at every time step,
        so the recurrent state cannot route around a dropped unit by waiting a step (Gal & Ghahramani)."""
        p = self.config.dropout
        if not self.training or p == 0:
            return x
        if not self.config.locked_dropout:
            return self.drop(x)
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)
        return x * mask

    def _embed(self, ids: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        emb = nn.functional.embedding(ids, vectors)
        if self.training and self.config.embed_dropout > 0:
            # Drop whole word types, not single coordinates: the model must not lean on any one word.
            keep = torch.rand(self.config.vocab_size, 1, device=ids.device) >= self.config.embed_dropout
            emb = emb * keep[ids] / (1 - self.config.embed_dropout)
        return self._dropout(emb)

    def set_weight_drop(self, p: float) -> None:
        """DropConnect on the hidden-to-hidden weights while training (AWD-LSTM's weight drop).

        Dropping recurrent *weights* rather than activations regularises the recurrence itself, once per
        batch, without touching the fast kernels. Serving never sees it: ``plain_state_dict`` is what bundles keep.
        """
        if p <= 0:
            return
        for layer in range(self.config.layers):
            parametrize.register_parametrization(self.rnn, f"weight_hh_l{layer}", _DropConnect(p))

    def plain_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under their plain names (weight drop's parametrisation removed), detached, on the CPU."""
        return {
            k.replace("parametrizations.", "").replace(".original", ""): v.detach().clone().cpu()
            for k, v in self.state_dict().items()
        }

    def _features(self, ids: torch.Tensor, state: State | None, vectors: torch.Tensor) -> tuple[torch.Tensor, State]:
        out, state = self.rnn(self._embed(ids, vectors), state)
        out = self._dropout(out)
        if self.project is not None:
            out = self.project(out)
        return out, state

    def features(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Hidden features before the output layer; ids is (batch, time)."""
        return self._features(ids, state, self.word_vectors())

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Return logits (batch, time, vocab) and the state to carry to the next call."""
        # One composition per call, shared by inputs and tied outputs (the same dropout masks on both sides).
        vectors = self.word_vectors()
        out, state = self._features(ids, state, vectors)
        weight, bias = self.output_layer(vectors)
        return nn.functional.linear(out, weight, bias), state


class CharComposer(nn.Module):
    """Word vectors from character ids: a sum or mean of character embeddings, or Kim et al.'s character CNN.

    ``cnn``: convolutions of widths 1-3 over the characters, max-pooled over positions, then a highway layer,
    as in "Character-Aware Neural Language Models" (Kim et al. 2016), sized so the result is ``width`` wide
    (default: the embedding's).
    """

    def __init__(self, config: NetConfig, width: int | None = None):
        super().__init__()
        self.config = config
        width = width or config.embed
        # Kim et al. embed characters in far fewer dimensions than the filters they feed (15 for 525); a quarter
        # of the width keeps the convolutions over the whole vocabulary at every step affordable on a CPU.
        char_width = width // 4 if config.compose == "cnn" else width
        self.embedding = nn.Embedding(config.chars, char_width, padding_idx=0)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.convs = self.gate = self.transform = None
        if config.compose == "cnn":
            widths = range(1, min(3, config.spelling_len) + 1)
            sizes = [width // len(widths)] * len(widths)
            sizes[-1] += width - sum(sizes)
            self.convs = nn.ModuleList(
                nn.Conv1d(char_width, size, kernel, padding=kernel - 1)
                for kernel, size in zip(widths, sizes, strict=True)
            )
            self.gate = nn.Linear(width, width)
            self.transform = nn.Linear(width, width)
            nn.init.constant_(self.gate.bias, -2.0)  # start close to carrying the pooled features through

    def forward(self, spelling: torch.Tensor) -> torch.Tensor:
        table = self.embedding.weight
        p = self.config.char_dropout
        if self.training and p > 0:
            # Character dropout, by type: a word must be recognisable from the rest of its characters.
            table = table * (torch.rand(table.size(0), 1, device=table.device) >= p) / (1 - p)
        chars = nn.functional.embedding(spelling, table)  # (words, length, embed); padding rows are zero
        if self.convs is None:
            total = chars.sum(1)
            if self.config.compose == "sum":
                return total
            return total / (spelling > 0).sum(1, keepdim=True).clamp_min(1)
        x = chars.transpose(1, 2)
        pooled = torch.cat([torch.tanh(conv(x)).amax(2) for conv in self.convs], dim=1)
        gate = torch.sigmoid(self.gate(pooled))
        return gate * torch.relu(self.transform(pooled)) + (1 - gate) * pooled


def spell(tokens: list[str], symbols: tuple[str, ...] = ()) -> tuple[torch.Tensor, int]:
    """Each token's character ids (tokens, longest), 0-padded, and the size of the character table.

    Characters are numbered from 1 in the order they first appear; a token in ``symbols`` (``<unk>``) is one
    character of its own rather than the letters it is written with.
    """
    ids: dict[str, int] = {}
    rows = []
    for token in tokens:
        parts = [token] if token in symbols else list(token)
        rows.append([ids.setdefault(part, len(ids) + 1) for part in parts])
    longest = max((len(row) for row in rows), default=1)
    spelling = torch.zeros(len(rows), max(longest, 1), dtype=torch.long)
    for i, row in enumerate(rows):
        spelling[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return spelling, len(ids) + 1


class _DropConnect(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(weight, self.p, self.training)


def detach(state: State | None) -> State | None:
    """Cut the graph at a batch boundary while keeping the state's values (truncated BPTT)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class DeviceError(ValueError):
    """The requested device is unknown or not present on this machine."""


def pick_device(requested: str = "auto") -> torch.device:
    """Resolve ``auto`` to cuda, then mps, then cpu; refuse a device this machine lacks."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but no CUDA GPU is available")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("--device mps was asked for, but MPS is not available")
    if requested not in ("cpu", "cuda", "mps") and not requested.startswith("cuda:"):
        raise DeviceError(f"unknown device {requested!r}: use auto, cpu, cuda or mps")
    return torch.device(requested)
