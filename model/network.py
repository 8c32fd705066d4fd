"""The recurrent language model: embedding → RNN / GRU / LSTM → linear over the vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

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

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if self.layers < 1 or self.hidden < 1 or self.embed < 1 or self.vocab_size < 2:
            raise ValueError("layers, hidden, embed must be positive and the vocabulary non-trivial")
        if not 0 <= self.dropout < 1 or not 0 <= self.embed_dropout < 1:
            raise ValueError("dropout must be in [0, 1)")


class LyricsNet(nn.Module):
    """Word-level recurrent language model.

    With ``tie_weights`` the output layer reuses the embedding matrix (through a projection from the
    hidden size down to the embedding size), which halves the parameters spent on the vocabulary and
    regularises a model trained on a small corpus.
    """

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed)
        self.rnn = CELLS[config.cell](
            config.embed,
            config.hidden,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        if config.tie_weights:
            self.project = nn.Linear(config.hidden, config.embed)
            self.decoder = nn.Linear(config.embed, config.vocab_size)
            self.decoder.weight = self.embedding.weight
        else:
            self.project = None
            self.decoder = nn.Linear(config.hidden, config.vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

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

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(ids)
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

    def features(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Hidden features before the output layer; ids is (batch, time)."""
        out, state = self.rnn(self._embed(ids), state)
        out = self._dropout(out)
        if self.project is not None:
            out = self.project(out)
        return out, state

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Return logits (batch, time, vocab) and the state to carry to the next call."""
        out, state = self.features(ids, state)
        return self.decoder(out), state


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
