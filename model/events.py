"""What a training run reports and how it exits: the contract between `python -m model train` and its readers.

``train.py`` emits these events; the CLI shows them to people (a bar and a line per epoch) or, with
``--progress jsonl``, writes one JSON object per line for programs; the bot's ``jobs.py`` parses those
lines back into the same classes. On the wire an event is ``{"event": <kind>, <its fields>}``.

Adding an event or a field is one edit here: the writer and the reader both go through these classes,
and ``parse_event`` refuses a line that does not match one of them (a reader skips it, never fails).
"""

from __future__ import annotations

import enum
import functools
import json
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar


class ExitCode(enum.IntEnum):
    """The exit status of `python -m model`; anything else is a crash or a signal."""

    DONE = 0
    ERROR = 2  # bad input or settings: one line on stderr, and an `error` event in jsonl mode
    CANCELLED = 3  # SIGTERM or Ctrl-C: stopped at the next batch, the last checkpoint kept for --resume


@dataclass(frozen=True)
class StartEvent:
    """The corpus is read and the vocabulary built; the first batch comes next. Held-out figures are the dev half's."""

    kind: ClassVar[str] = "start"
    vocab: int
    train_tokens: int
    heldout_tokens: int
    heldout_chars: int
    steps_per_epoch: int
    epochs: int
    device: str
    trigram_bpc: float  # the character-trigram bar the model must beat
    world_size: int


@dataclass(frozen=True)
class ResumeEvent:
    """The run continues from a checkpoint that had finished `epoch` epochs."""

    kind: ClassVar[str] = "resume"
    epoch: int
    path: str


@dataclass(frozen=True)
class StepEvent:
    """One batch done."""

    kind: ClassVar[str] = "step"
    epoch: int
    step: int
    steps: int
    loss: float


@dataclass(frozen=True)
class EpochEvent:
    """One epoch done and scored on the held-out text. The first six fields are the bundle's history record."""

    kind: ClassVar[str] = "epoch"
    epoch: int
    train_loss: float
    heldout_loss: float
    bpc: float
    lr: float
    seconds: float
    epochs: int
    best_bpc: float
    improved: bool
    elapsed: float


@dataclass(frozen=True)
class CheckpointEvent:
    """A resumable checkpoint was written."""

    kind: ClassVar[str] = "checkpoint"
    epoch: int
    path: str


@dataclass(frozen=True)
class EarlyStopEvent:
    """The held-out score stopped improving for --patience epochs."""

    kind: ClassVar[str] = "early_stop"
    epoch: int
    best_bpc: float


@dataclass(frozen=True)
class TimeLimitEvent:
    """--max-minutes ran out; the best epoch so far becomes the bundle."""

    kind: ClassVar[str] = "time_limit"
    epoch: int


@dataclass(frozen=True)
class JudgingEvent:
    """The bundle is trained and scored; `songs` songs are being written for its song-quality report."""

    kind: ClassVar[str] = "judging"
    songs: int


@dataclass(frozen=True)
class DoneEvent:
    """The bundle is written; the figures are its metrics on the test half of the held-out tail."""

    kind: ClassVar[str] = "done"
    path: str
    bpc: float  # the served mixture, song cache included
    static_bpc: float  # the same without the cache
    net_bpc: float
    trigram_bpc: float
    heldout_chars: int
    unk_chars: int
    epochs: int
    seconds: float


@dataclass(frozen=True)
class ErrorEvent:
    """The run could not go on; `message` says what to change. Exit status ExitCode.ERROR follows."""

    kind: ClassVar[str] = "error"
    message: str


@dataclass(frozen=True)
class CancelledEvent:
    """The run was asked to stop. Exit status ExitCode.CANCELLED follows."""

    kind: ClassVar[str] = "cancelled"
    message: str


Event = (
    StartEvent
    | ResumeEvent
    | StepEvent
    | EpochEvent
    | CheckpointEvent
    | EarlyStopEvent
    | TimeLimitEvent
    | JudgingEvent
    | DoneEvent
    | ErrorEvent
    | CancelledEvent
)
EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in typing.get_args(Event)}


def to_json(event: Event) -> str:
    """One line of the jsonl protocol."""
    return json.dumps({"event": event.kind, **asdict(event)}, ensure_ascii=False)


def parse_event(line: bytes | str) -> Event | None:
    """The event on one line, or None if the line is not one (garbage, a stray print, a field of the wrong type).

    Unknown keys are ignored, so a newer writer's extra fields do not stop an older reader.
    """
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    if not isinstance(value, dict) or not isinstance(kind := value.get("event"), str) or kind not in EVENT_TYPES:
        return None
    cls = EVENT_TYPES[kind]
    hints = _field_types(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in value:
            if f.default is MISSING:
                return None
            continue
        checked = _check(value[f.name], hints[f.name])
        if checked is _INVALID:
            return None
        values[f.name] = checked
    return cls(**values)


_INVALID = object()


def _check(value: Any, kind: type) -> Any:
    """`value` as a `kind` (an int is a fine float), or _INVALID. Booleans are not numbers here."""
    if kind is bool:
        return value if isinstance(value, bool) else _INVALID
    if isinstance(value, bool):
        return _INVALID
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    return value if isinstance(value, kind) else _INVALID


@functools.cache
def _field_types(cls: type) -> dict[str, type]:
    return typing.get_type_hints(cls)
