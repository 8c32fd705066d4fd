"""One record per training run: ``TrainConfig``, and how each of its fields is spelled on the command line.

Every field is a ``python -m model train`` flag (``seq_len`` is ``--seq-len``; a boolean ``resume`` is
``--resume`` / ``--no-resume``), built from ``dataclasses.fields`` by ``add_arguments``; ``to_argv``
spells values the same way for a program that starts a run (the bot). A new training option is one new
field here: the CLI, the bot's command line and the bundle's recorded ``train_config`` all follow.
"""

from __future__ import annotations

import argparse
import math
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from .corpus import default_corpus
from .network import CELLS, COMPOSITIONS, NetConfig


class TrainingError(RuntimeError):
    """Training cannot go on (NaN or exploding loss, bad settings); the message says what to change."""


def checkpoint_path(out: str | Path) -> Path:
    """Where a run writing the bundle `out` keeps its resumable checkpoint (models/x.pt -> models/x.ckpt)."""
    return Path(out).with_suffix(".ckpt")


def _option(default: Any = MISSING, help: str = "", **metadata: Any) -> Any:
    """A field with its command-line help; `flag` respells it, `choices` limits it."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults are the tuned configuration for 2 CPU cores."""

    corpus: str = _option(
        "",
        ".txt file or .zip of .txt files (UTF-8 or GBK); default data/jaychou_lyrics.txt.zip once "
        "`python -m model fetch` has downloaded it, else the bundled sample data/sample_lyrics.txt",
    )
    added_corpora: str = _option(
        "",
        "a folder of .txt files to train on as well (what /corpus add stores); they join the training part "
        "only: the held-out text stays the tail of --corpus",
    )
    out: str = _option("models/lyrics.pt", "bundle path")
    cell: str = _option("lstm", "recurrent cell", choices=tuple(CELLS))
    layers: int = 1
    hidden: int = 512
    embed: int = 256
    dropout: float = 0.65
    embed_dropout: float = 0.2
    tie_weights: bool = _option(True, "tie input and output embeddings (--no-tie unties them)", flag="tie")
    locked_dropout: bool = _option(True, "one dropout mask per sequence for every time step")
    weight_drop: float = _option(0.0, "DropConnect on the recurrent weights while training")
    compose: str = _option(
        "mean",
        "compose each word's vector from its characters' embeddings (none: a table of words)",
        choices=COMPOSITIONS,
    )
    compose_own: bool = _option(
        True,
        "with --compose: add each word's own embedding to its composition (--no-compose-own: the composition alone)",
    )
    compose_output: bool = _option(True, "with --compose: score words with composed output vectors too")
    word_dropout: float = _option(
        0.0, "with --compose: share of word types seen through their characters alone at each step"
    )
    char_dropout: float = _option(
        0.2, "with --compose: share of character types dropped from the compositions at each step"
    )
    spell_dropout: float = _option(
        0.5, "share of the training text's words spelled with their characters, drawn anew each epoch"
    )
    spell_whole: bool = _option(
        False, "with --spell-dropout: the token before a spelled word still has the whole word as its target"
    )
    average: float = _option(
        0.995, "keep an exponential moving average of the weights with this decay per batch and serve it (0: off)"
    )
    min_count: int = 1
    unk_rate: float = 0.5
    seq_len: int = 32
    batch_size: int = _option(32, "the global batch: streams over all processes")
    lr: float = 2e-3
    weight_decay: float = 0.1
    clip: float = _option(0.5, "gradient norm clipping")
    epochs: int = 40
    # 3: the learning rate drops after one epoch without progress (lr_patience) and gets two more to pay off;
    # on the reference corpus a fourth never has, and it is 11 s of a 5-minute budget.
    patience: int = _option(3, "epochs without a better held-out score before stopping")
    lr_patience: int = 1
    lr_factor: float = 0.3
    heldout_fraction: float = 0.1
    ngram_order: int = 3
    count_dev: bool = _option(
        True,
        "once the mixture's weights are fit on the dev text, the served count model counts it too, as the "
        "character-trigram bar does (the network never trains on it)",
    )
    cache_weight: float = 0.1
    device: str = _option("auto", "auto, cpu, cuda or mps")
    seed: int = 0
    threads: int = _option(0, "torch threads (0: torch's choice)")
    resume: bool = _option(False, "continue from the checkpoint beside --out")
    judge_songs: int = _option(60, "songs written for the bundle's song-quality report (0: no report)")
    max_minutes: float = _option(0.0, "stop after the first epoch that ends past this many minutes (0: no limit)")

    def __post_init__(self) -> None:
        if not self.corpus:
            self.corpus = str(default_corpus())
        checks = [
            (self.layers >= 1, "--layers must be at least 1"),
            (self.hidden >= 1 and self.embed >= 1, "--hidden and --embed must be positive"),
            (0 <= self.dropout < 1, "--dropout must be in [0, 1)"),
            (self.seq_len >= 2, "--seq-len must be at least 2"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.lr > 0 and math.isfinite(self.lr), "--lr must be a positive number"),
            (self.clip > 0, "--clip must be a positive number"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.patience >= 1, "--patience must be at least 1"),
            (0 < self.heldout_fraction < 0.5, "the held-out fraction must be in (0, 0.5)"),
            (self.min_count >= 1, "--min-count must be at least 1"),
            (0 <= self.weight_drop < 1, "--weight-drop must be in [0, 1)"),
            (0 <= self.word_dropout < 1 and 0 <= self.char_dropout < 1, "--word-dropout, --char-dropout: in [0, 1)"),
            (0 <= self.spell_dropout < 1, "--spell-dropout must be in [0, 1)"),
            (
                self.compose_own or self.compose_output or not self.tie_weights,
                "--no-compose-own with tied weights needs --compose-output: words would have no output vectors",
            ),
            (0 <= self.average < 1, "--average must be in [0, 1)"),
            (self.judge_songs == 0 or self.judge_songs >= 10, "--judge-songs must be 0 (no report) or at least 10"),
            (0 <= self.cache_weight < 1, "--cache-weight must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)

    @property
    def checkpoint_path(self) -> Path:
        return checkpoint_path(self.out)

    def net_config(self, vocab_size: int, chars: int = 0, spelling_len: int = 0) -> NetConfig:
        """The network's shape for a vocabulary (and, composing words, its character table and longest spelling)."""
        composing = self.compose != "none"
        return NetConfig(
            vocab_size=vocab_size,
            cell=self.cell,
            layers=self.layers,
            hidden=self.hidden,
            embed=self.embed,
            dropout=self.dropout,
            embed_dropout=self.embed_dropout,
            tie_weights=self.tie_weights,
            locked_dropout=self.locked_dropout,
            compose=self.compose,
            chars=chars if composing else 0,
            spelling_len=spelling_len if composing else 0,
            compose_own=self.compose_own if composing else True,
            compose_output=self.compose_output if composing else False,
            word_dropout=self.word_dropout if composing else 0.0,
            char_dropout=self.char_dropout if composing else 0.0,
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from `values`, ignoring keys that are not fields (a bundle's record of an older run)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# ---------------------------------------------------------------------------------------------
# the command line


def flag(name: str) -> str:
    """The command-line flag of a TrainConfig field: seq_len -> --seq-len (tie_weights -> --tie)."""
    spelled = _fields()[name].metadata.get("flag", name)
    return "--" + spelled.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, typed and defaulted from the field."""
    types = typing.get_type_hints(TrainConfig)
    for f in _fields().values():
        kind, help_text = types[f.name], f.metadata.get("help", "")
        options: dict[str, Any] = {"dest": f.name}
        if f.default is MISSING:
            options["required"] = True
        else:
            options["default"] = f.default
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction  # --resume and --no-resume
        else:
            options["type"] = kind
            if f.default not in (MISSING, ""):  # an empty default's help says what it means
                help_text = f"{help_text} (default %(default)s)" if help_text else "default %(default)s"
        if "choices" in f.metadata:
            options["choices"] = f.metadata["choices"]
        parser.add_argument(flag(f.name), help=help_text, **options)


def from_args(args: argparse.Namespace) -> TrainConfig:
    """The config a parser built by add_arguments has read."""
    return TrainConfig(**{name: getattr(args, name) for name in _fields()})


def to_argv(values: Mapping[str, Any]) -> list[str]:
    """`values` (TrainConfig field names) as flags that add_arguments reads back: {"seq_len": 16} -> --seq-len 16.

    Raises KeyError naming a key that is not a TrainConfig field.
    """
    argv: list[str] = []
    for name, value in values.items():
        if name not in _fields():
            raise KeyError(f"{name!r} is not a training option (a TrainConfig field)")
        if isinstance(value, bool):
            spelled = flag(name)
            argv.append(spelled if value else "--no-" + spelled.removeprefix("--"))
        else:
            argv += [flag(name), str(value)]
    return argv


def _fields() -> dict[str, Field[Any]]:
    return {f.name: f for f in fields(TrainConfig)}
