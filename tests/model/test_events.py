"""The contract with the training process: what it emits is what its readers parse, and every option is a flag."""

import dataclasses
import json

import pytest

from model import config
from model.__main__ import build_parser
from model.config import TrainConfig
from model.events import EVENT_TYPES, DoneEvent, EpochEvent, StepEvent, TimeLimitEvent, parse_event, to_json
from model.train import train
from tests.helpers import SAMPLE_CORPUS, tiny_config


def test_training_emits_only_contract_events_and_they_survive_the_wire(tmp_path):
    events = []
    # A time limit that runs out after the first epoch: the run reports it and still writes its bundle.
    train(tiny_config(SAMPLE_CORPUS, tmp_path / "m.pt", epochs=3, max_minutes=1e-9), on_event=events.append)
    kinds = [type(event) for event in events]
    assert set(kinds) <= set(EVENT_TYPES.values())
    assert TimeLimitEvent in kinds and kinds[-1] is DoneEvent
    assert sum(kind is EpochEvent for kind in kinds) == 1
    for event in events:
        line = to_json(event)
        assert json.loads(line)["event"] == event.kind
        assert parse_event(line) == event
        assert parse_event(line.encode()) == event


def test_a_line_that_breaks_the_contract_is_no_event():
    step = to_json(StepEvent(epoch=1, step=2, steps=3, loss=4.5))
    assert parse_event(step) == StepEvent(epoch=1, step=2, steps=3, loss=4.5)
    wire = json.loads(step)
    assert parse_event(json.dumps({**wire, "added_later": [1]})) is not None  # a newer writer's extra field
    assert parse_event(json.dumps({**wire, "loss": 4})).loss == 4.0  # an int is a fine float
    for broken in (
        {**wire, "step": "two"},
        {**wire, "step": True},
        {k: v for k, v in wire.items() if k != "loss"},
        {**wire, "event": "unheard_of"},
        {**wire, "event": ["step"]},
    ):
        assert parse_event(json.dumps(broken)) is None, broken


def test_the_cli_accepts_every_config_field():
    """Each TrainConfig field is a flag (--clip included), and to_argv spells values the way the parser reads them."""
    values = {}
    for f in dataclasses.fields(TrainConfig):
        default = f.default
        if f.name == "corpus":
            values[f.name] = "lyrics.txt"
        elif "choices" in f.metadata:  # --cell, --compose
            values[f.name] = next(choice for choice in f.metadata["choices"] if choice != default)
        elif isinstance(default, bool):
            values[f.name] = not default
        elif isinstance(default, int):
            values[f.name] = default + 1
        elif isinstance(default, float):
            values[f.name] = default / 2 if default else 0.25
        else:
            values[f.name] = f"{default or f.name}-other"  # not "-other": argparse would take it for a flag
    expected = TrainConfig(**values)
    argv = config.to_argv(values)
    assert "--clip" in argv and "--no-tie" in argv and "--resume" in argv
    parsed = config.from_args(build_parser().parse_args(["train", *argv]))
    assert parsed == expected


def test_to_argv_refuses_what_is_not_an_option():
    with pytest.raises(KeyError, match="not a training option"):
        config.to_argv({"progress": "jsonl"})
