"""The options of /train start: one record, `StartOptions`, from which everything about them follows.

    @train.command(name="start")
    @slash_options(StartOptions)                 # one slash-command option per field, typed and described
    async def start(self, interaction, **values):
        options = StartOptions(**values)
        options.problems()                       # our own check of bounds and choices
        train_argv(..., options.child_options())  # TrainConfig fields: the child's flags

Every field is a TrainConfig field of the same name (model/config.py), which reaches
`python -m model train` as its flag when the admin sets it, unless it is marked `child=False`
(`force` is the bot's own: whether a worse model may go live). Adding an option is one field here.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Literal, TypeVar

from discord import app_commands

from bot.i18n import Locale, localized, text
from model.network import CELLS

F = TypeVar("F", bound=Callable[..., Any])


def option(
    description: str | app_commands.locale_str,
    *,
    default: Any = None,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    label: str | None = None,
    child: bool = True,
) -> Any:
    """A field of StartOptions: its slash-command description (at most 100 characters; a `localized` key for
    Discord's localizations), its bounds or choices,
    how a progress message names it (`label`: a catalogue key whose text holds {value}; the field's name
    if none), and whether the training child gets it."""
    return field(
        default=default,
        metadata={
            "description": description,
            "minimum": minimum,
            "maximum": maximum,
            "choices": choices,
            "label": label,
            "child": child,
        },
    )


@dataclass(frozen=True)
class StartOptions:
    """What an admin may choose for one /train start; None or False means the configured default."""

    epochs: int | None = option(
        localized("commands.train.epochs_description"), minimum=1, maximum=500, label="options.epochs"
    )
    cell: str | None = option(localized("commands.train.cell_description"), choices=tuple(CELLS), label="options.cell")
    resume: bool = option(localized("commands.train.resume_description"), default=False, label="options.resume")
    force: bool = option(
        localized("commands.train.force_description"), default=False, label="options.force", child=False
    )

    def problems(self, locale: Locale = None) -> list[str]:
        """What is out of bounds, one sentence each in `locale`'s language. discord.py does not re-check what
        Discord's client enforces, and a hand-made payload could send anything."""
        found = []
        for f, value in self._set():
            meta = f.metadata
            low, high, choices = meta["minimum"], meta["maximum"], meta["choices"]
            if choices is not None and value not in choices:
                found.append(text(locale, "options.choices", name=f.name, choices=", ".join(choices)))
            elif (low is not None and value < low) or (high is not None and value > high):
                found.append(text(locale, "options.range", name=f.name, low=low, high=high))
        return found

    def child_options(self) -> dict[str, Any]:
        """The options the admin set that go to the training child, as TrainConfig fields."""
        return {f.name: value for f, value in self._set() if f.metadata["child"]}

    def describe(self, locale: Locale = None) -> str:
        """The options in words, for the progress message (English, the default, for the log)."""
        parts = [
            text(locale, f.metadata["label"], value=value)
            if f.metadata["label"]
            else (f.name if isinstance(value, bool) else f"{f.name} {value}")
            for f, value in self._set()
        ]
        return text(locale, "options.join").join(parts) or text(locale, "options.default")

    def _set(self) -> list[tuple[Field[Any], Any]]:
        """(field, value) for each option the admin set: not None, not the default."""
        return [
            (f, getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None and getattr(self, f.name) != f.default
        ]


def slash_options(record: type) -> Callable[[F], F]:
    """Give a command callback `(self, interaction, **values)` one keyword parameter per field of `record`,
    typed (with bounds or choices) and described, so discord.py builds the command's options from it."""

    def decorate(callback: F) -> F:
        hints = typing.get_type_hints(record)
        head = list(inspect.signature(callback).parameters.values())[:2]  # self, interaction
        params = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=f.default,
                annotation=_slash_type(f, hints[f.name]),
            )
            for f in fields(record)
        ]
        callback.__signature__ = inspect.Signature([*head, *params])  # type: ignore[attr-defined]
        descriptions = {f.name: f.metadata["description"] for f in fields(record)}
        return app_commands.describe(**descriptions)(callback)

    return decorate


def _slash_type(f: Field[Any], hint: Any) -> Any:
    """The annotation discord.py turns into the option: a Range for bounds, a Literal for choices."""
    args = typing.get_args(hint)
    optional = type(None) in args
    kind = next((arg for arg in args if arg is not type(None)), hint)
    meta = f.metadata
    if meta["choices"] is not None:
        kind = Literal[meta["choices"]]
    elif meta["minimum"] is not None or meta["maximum"] is not None:
        kind = app_commands.Range[kind, meta["minimum"], meta["maximum"]]
    if f.default is MISSING:
        raise TypeError(f"/train start option {f.name!r} needs a default: every option of the command is optional")
    return kind | None if optional or f.default is None else kind
