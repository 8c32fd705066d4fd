"""Command line: ``python -m model fetch | train | evaluate | generate | judge``.

People get a tqdm bar and a line per epoch; programs (the bot) pass ``--progress jsonl`` and read one
JSON object per line on stdout. Errors are one line on stderr (and an ``error`` event) with a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import config, distributed, lifeline
from .checkpoint import BundleError, load_bundle
from .config import TrainingError
from .corpus import SAMPLE_NOTE, CorpusError, default_corpus, is_sample, load_corpus
from .evaluate import evaluate_bundle
from .events import (
    CancelledEvent,
    DoneEvent,
    EarlyStopEvent,
    EpochEvent,
    ErrorEvent,
    Event,
    ExitCode,
    JudgingEvent,
    StartEvent,
    StepEvent,
    TimeLimitEvent,
    to_json,
)
from .fetch import DEADLINE_S, DEFAULT_OUT, DEFAULT_SHA256, DEFAULT_URL, TIMEOUT_S, FetchError, fetch
from .judge import SEEDS, judge, judge_bundle
from .network import DeviceError, pick_device
from .rhyme import rhyme_name
from .sample import Sampler, SampleRequest, SamplingError
from .stepper import PRECISIONS
from .train import Run, Trained, TrainingCancelled, announce, finish, fit, setup, write_bundle


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model", description="Train and use the lyrics model.")
    commands = parser.add_subparsers(dest="command", required=True)

    f = commands.add_parser("fetch", help="download the reference corpus (the d2l-zh book's Jay Chou lyrics)")
    f.add_argument("--url", default=DEFAULT_URL, help="where to download it from (default %(default)s)")
    f.add_argument("--sha256", default=DEFAULT_SHA256, help="the checksum it must have (default %(default)s)")
    f.add_argument("--out", default=str(DEFAULT_OUT), help="where to write it (default %(default)s)")
    f.add_argument(
        "--timeout", type=float, default=TIMEOUT_S, help="seconds to wait for the server (default %(default)s)"
    )
    f.add_argument(
        "--deadline", type=float, default=DEADLINE_S, help="seconds for the whole download (default %(default)s)"
    )

    t = commands.add_parser("train", help="train a model and write a bundle")
    config.add_arguments(t)  # one flag per TrainConfig field
    t.add_argument("--progress", choices=["bar", "jsonl", "none"], default="bar")

    e = commands.add_parser("evaluate", help="print a bundle's held-out figures on a corpus")
    e.add_argument("bundle")
    e.add_argument(
        "--corpus", default="", help="default data/jaychou_lyrics.txt.zip if fetched, else data/sample_lyrics.txt"
    )
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    g = commands.add_parser("generate", help="write a song from a seed (defaults: /lyrics' defaults)")
    g.add_argument("bundle")
    g.add_argument("seed", nargs="?", default="")
    defaults = SampleRequest()
    g.add_argument("--temperature", type=float, default=defaults.temperature)
    g.add_argument("--length", type=int, default=defaults.length, help="tokens to write (default %(default)s)")
    g.add_argument("--top-k", type=int, default=defaults.top_k)
    g.add_argument("--top-p", type=float, default=defaults.top_p)
    g.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty)
    g.add_argument("--max-lines", type=int, default=defaults.max_lines)
    g.add_argument("--rhyme", default=defaults.rhyme, help="auto, off, or a character whose rhyme to use")
    g.add_argument("--candidates", type=int, default=defaults.candidates, help="lines written per line kept")
    g.add_argument("--random-seed", type=int, default=None, help="reproduce a song (default: a fresh one)")
    g.add_argument(
        "--allow-copies",
        dest="no_copy",
        action="store_false",
        help="let the song reproduce training lines and 8-character spans (no-copy is on by default)",
    )
    g.add_argument("--device", default="cpu")
    g.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="the network's products while writing: auto is bfloat16 on a CPU that has it natively",
    )

    j = commands.add_parser("judge", help="the song-quality report: a bundle's songs against the corpus")
    j.add_argument("bundle")
    j.add_argument(
        "--corpus", default="", help="default data/jaychou_lyrics.txt.zip if fetched, else data/sample_lyrics.txt"
    )
    j.add_argument("--songs", type=int, default=60, help="songs to write (default %(default)s)")
    j.add_argument(
        "--seeds",
        nargs="+",
        default=None,
        metavar="SEED",
        help="the seeds to write from, each in turn (default: the report's own 20); an outside check passes "
        "seeds the report never uses",
    )
    j.add_argument("--device", default="cpu")
    j.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="the network's products while writing: auto is bfloat16 on a CPU that has it natively",
    )
    j.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


class Reporter:
    """Turns training events into a tqdm bar and epoch lines, or JSON lines."""

    def __init__(self, mode: str):
        self.mode = mode
        self.bar: tqdm | None = None

    def __call__(self, event: Event) -> None:
        if self.mode == "jsonl":
            print(to_json(event), flush=True)
            return
        if self.mode == "none":
            return
        match event:
            case StartEvent():
                tqdm.write(
                    f"vocabulary {event.vocab} tokens, {event.train_tokens} training tokens, "
                    f"{event.heldout_chars} held-out characters on {event.device}; "
                    f"character trigram bar {event.trigram_bpc:.3f} bpc"
                )
            case StepEvent():
                if self.bar is None:
                    self.bar = tqdm(total=event.steps, desc=f"epoch {event.epoch}", leave=False, unit="batch")
                self.bar.update(1)
                self.bar.set_postfix(loss=f"{event.loss:.3f}")
            case EpochEvent():
                self.close()
                tqdm.write(
                    f"epoch {event.epoch:3d}  train loss {event.train_loss:.3f}  held-out loss "
                    f"{event.heldout_loss:.3f}  held-out bpc {event.bpc:.3f}  lr {event.lr:.1e}  "
                    f"{event.seconds:.1f}s{'  *' if event.improved else ''}"
                )
            case EarlyStopEvent():
                tqdm.write(
                    f"stopped early after epoch {event.epoch}: the held-out score stopped improving "
                    f"(best {event.best_bpc:.3f} bpc)"
                )
            case TimeLimitEvent():
                tqdm.write(f"stopped after epoch {event.epoch}: --max-minutes ran out")
            case JudgingEvent():
                tqdm.write(f"writing {event.songs} songs for the song-quality report (--judge-songs 0 skips it)")
            case DoneEvent():
                self.close()
                tqdm.write(
                    f"wrote {event.path}: test bpc {event.bpc:.3f} served, {event.static_bpc:.3f} without the "
                    f"song cache, {event.net_bpc:.3f} network alone; trigram bar {event.trigram_bpc:.3f} "
                    f"({event.seconds:.0f}s)"
                )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_fetch(args: argparse.Namespace) -> int:
    fetched = fetch(args.url, args.out, args.sha256, timeout=args.timeout, deadline=args.deadline)
    if fetched.downloaded:
        print(f"wrote {fetched.path} ({fetched.size:,} bytes, sha256 verified)")
    else:
        print(f"{fetched.path} is already there and verified; nothing to do")
    return ExitCode.DONE


def note_sample(corpus: str) -> None:
    """Say so when the corpus is the bundled sample rather than Jay Chou's lyrics."""
    if is_sample(corpus):
        print(f"note: {SAMPLE_NOTE}", file=sys.stderr)


def train_and_judge(
    train_config: config.TrainConfig,
    on_event: Callable[[Event], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """The ``train`` command's steps: ``train.train``'s, with the bundle's song-quality report (--judge-songs; 0
    skips it) after the bundle is written and before the run's last event, so the bundle a ``done`` event
    names already carries it."""
    run = setup(train_config, on_event, should_stop)
    fit(run)
    trained = finish(run)
    if train_config.judge_songs and run.dist.is_main and run.data.source is not None:
        judge_trained(run, trained)
    announce(run, trained)
    return trained.path


def judge_trained(run: Run, trained: Trained) -> None:
    """Write songs from the bundle as it is served, and rewrite the bundle (atomically) with their report in its
    metrics."""
    run.emit(JudgingEvent(songs=run.config.judge_songs))
    trained.metrics["judge"] = judge_bundle(trained.path, run.data.source, run.config.judge_songs)
    trained.metrics["seconds"] = time.monotonic() - run.started
    write_bundle(run, trained)


def run_train(args: argparse.Namespace) -> int:
    train_config = config.from_args(args)
    note_sample(train_config.corpus)
    report = Reporter(args.progress)
    stop = {"requested": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["requested"] = True

    # SIGTERM (the bot's cancel) stops at the next batch; the last checkpoint stays valid for --resume.
    signal.signal(signal.SIGTERM, on_signal)
    lifeline.stop_with_parent()  # a child whose bot was killed outright stops too (LYRICS_PARENT_PID)
    try:
        train_and_judge(train_config, on_event=report, should_stop=lambda: stop["requested"])
    except TrainingCancelled as exc:
        report(CancelledEvent(message=str(exc)))
        if args.progress != "jsonl":
            print(str(exc), file=sys.stderr)
        return ExitCode.CANCELLED
    finally:
        report.close()
        distributed.shutdown()
    return ExitCode.DONE


def run_evaluate(args: argparse.Namespace) -> int:
    corpus = args.corpus or str(default_corpus())
    note_sample(corpus)
    bundle = load_bundle(args.bundle)
    figures = evaluate_bundle(bundle, corpus, pick_device(args.device))
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    else:
        print(
            f"test bpc {figures['bpc']:.3f} served, {figures['static_bpc']:.3f} without the song cache, "
            f"{figures['net_bpc']:.3f} network alone; character trigram bar {figures['trigram_bpc']:.3f}; "
            f"{figures['chars']} characters, {figures['unk_chars']} unknown; "
            f"mixture weights {', '.join(f'{k} {v:.2f}' for k, v in figures['weights'].items())}"
        )
        if not figures["same_corpus"]:
            print("note: this corpus differs from the one the bundle was trained on", file=sys.stderr)
    return ExitCode.DONE


def run_generate(args: argparse.Namespace) -> int:
    import secrets

    sampler = Sampler.load(args.bundle, device=args.device, precision=args.precision)
    seed = args.random_seed if args.random_seed is not None else secrets.randbelow(2**31)
    sample = sampler.generate(
        SampleRequest(
            seed=args.seed,
            temperature=args.temperature,
            length=args.length,
            random_seed=seed,
            top_k=args.top_k,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
            max_lines=args.max_lines,
            no_copy=args.no_copy,
            rhyme=args.rhyme,
            candidates=args.candidates,
        )
    )
    print(sample.text)
    notes = [f"random seed {seed}", f"{len(sample.copied_lines)} of its lines are verbatim training lines"]
    if sample.rhyme:
        notes.append(f"rhyme {rhyme_name(sample.rhyme)}")
    if sample.unknown:
        notes.append(f"not in the vocabulary: {' '.join(sample.unknown)}")
    print(f"\n({'; '.join(notes)})", file=sys.stderr)
    return ExitCode.DONE


def run_judge(args: argparse.Namespace) -> int:
    if args.songs < 10:
        raise SamplingError(f"--songs must be at least 10 for the fluency tests to mean anything, not {args.songs}")
    corpus = args.corpus or str(default_corpus())
    note_sample(corpus)
    seeds = tuple(args.seeds) if args.seeds else SEEDS
    for seed in seeds:  # a bad seed stops the report before the bundle is even loaded, with the reason
        SampleRequest(seed=seed).validate()
    sampler = Sampler.load(args.bundle, device=args.device, precision=args.precision)
    report = judge(sampler, load_corpus(corpus), args.songs, seeds)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(report.table())
        met = sum(report.targets.values())
        print(f"{met} of {len(report.targets)} targets met at /lyrics' defaults; an example:\n\n{report.examples[0]}")
    return ExitCode.DONE


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "fetch": run_fetch,
    "train": run_train,
    "evaluate": run_evaluate,
    "generate": run_generate,
    "judge": run_judge,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (
        CorpusError,
        TrainingError,
        BundleError,
        SamplingError,
        DeviceError,
        FetchError,
        distributed.DistributedError,
    ) as exc:
        if getattr(args, "progress", None) == "jsonl":
            print(to_json(ErrorEvent(message=str(exc))), flush=True)
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.CANCELLED


if __name__ == "__main__":
    sys.exit(main())
