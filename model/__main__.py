"""Command line: ``python -m model train | evaluate | generate``.

People get a tqdm bar and a line per epoch; programs (the bot) pass ``--progress jsonl`` and read one
JSON object per line on stdout. Errors are one line on stderr (and an ``error`` event) with a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import fields
from typing import Any, Callable

from tqdm import tqdm

from . import distributed
from .checkpoint import BundleError, load_bundle
from .corpus import CorpusError
from .mixture import evaluate_bundle
from .network import DeviceError, pick_device
from .sample import SampleRequest, Sampler, SamplingError
from .train import TrainConfig, TrainingCancelled, TrainingError, train

EXIT_ERROR = 2
EXIT_CANCELLED = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model", description="Train and use the lyrics model.")
    commands = parser.add_subparsers(dest="command", required=True)

    defaults = TrainConfig(corpus="")
    t = commands.add_parser("train", help="train a model and write a bundle")
    t.add_argument("--corpus", required=True, help=".txt file or .zip of .txt files (UTF-8 or GBK)")
    t.add_argument("--out", default=defaults.out, help="bundle path (default %(default)s)")
    t.add_argument("--cell", choices=["gru", "lstm", "rnn"], default=defaults.cell)
    for name, kind in [("layers", int), ("hidden", int), ("embed", int), ("dropout", float),
                       ("embed-dropout", float), ("weight-decay", float), ("seq-len", int), ("batch-size", int),
                       ("lr", float), ("epochs", int), ("patience", int), ("min-count", int), ("seed", int),
                       ("threads", int), ("max-minutes", float),
                       ("cache-weight", float)]:
        default = getattr(defaults, name.replace("-", "_"))
        t.add_argument(f"--{name}", type=kind, default=default, help=f"default {default}")
    t.add_argument("--no-tie", dest="tie_weights", action="store_false", help="untie input and output embeddings")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    t.add_argument("--progress", choices=["bar", "jsonl", "none"], default="bar")

    e = commands.add_parser("evaluate", help="print a bundle's held-out figures on a corpus")
    e.add_argument("bundle")
    e.add_argument("--corpus", required=True)
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    g = commands.add_parser("generate", help="write a song from a seed")
    g.add_argument("bundle")
    g.add_argument("seed", nargs="?", default="")
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--length", type=int, default=150, help="tokens to write (default %(default)s)")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--max-lines", type=int, default=0)
    g.add_argument("--random-seed", type=int, default=None, help="reproduce a song (default: a fresh one)")
    g.add_argument("--no-copy", action="store_true", help="never reproduce a training line of 6+ characters")
    g.add_argument("--device", default="cpu")
    return parser


class Reporter:
    """Turns training events into a tqdm bar and epoch lines, or JSON lines."""

    def __init__(self, mode: str):
        self.mode = mode
        self.bar: tqdm | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        if self.mode == "jsonl":
            print(json.dumps(event, ensure_ascii=False), flush=True)
            return
        if self.mode == "none":
            return
        kind = event["event"]
        if kind == "start":
            tqdm.write(f"vocabulary {event['vocab']} tokens, {event['train_tokens']} training tokens, "
                       f"{event['heldout_chars']} held-out characters on {event['device']}; "
                       f"character trigram bar {event['trigram_bpc']:.3f} bpc")
        elif kind == "step":
            if self.bar is None:
                self.bar = tqdm(total=event["steps"], desc=f"epoch {event['epoch']}", leave=False, unit="batch")
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event['loss']:.3f}")
        elif kind == "epoch":
            self._close_bar()
            tqdm.write(f"epoch {event['epoch']:3d}  train loss {event['train_loss']:.3f}  held-out loss "
                       f"{event['heldout_loss']:.3f}  held-out bpc {event['bpc']:.3f}  lr {event['lr']:.1e}  "
                       f"{event['seconds']:.1f}s{'  *' if event['improved'] else ''}")
        elif kind == "early_stop":
            tqdm.write(f"stopped early after epoch {event['epoch']}: the held-out score stopped improving "
                       f"(best {event['best_bpc']:.3f} bpc)")
        elif kind == "done":
            self._close_bar()
            tqdm.write(f"wrote {event['path']}: held-out {event['bpc']:.3f} bpc (network alone "
                       f"{event['net_bpc']:.3f}, trigram bar {event['trigram_bpc']:.3f}) in {event['seconds']:.0f}s")

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_train(args: argparse.Namespace) -> int:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    config = TrainConfig.from_dict(values)
    report = Reporter(args.progress)
    stop = {"requested": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["requested"] = True

    # SIGTERM (the bot's cancel) stops at the next batch; the last checkpoint stays valid for --resume.
    signal.signal(signal.SIGTERM, on_signal)
    try:
        train(config, on_event=report, should_stop=lambda: stop["requested"])
    except TrainingCancelled as exc:
        report({"event": "cancelled", "message": str(exc)})
        if args.progress != "jsonl":
            print(str(exc), file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        report._close_bar()
        distributed.shutdown()
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    figures = evaluate_bundle(bundle, args.corpus, pick_device(args.device))
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    else:
        print(f"held-out bpc {figures['bpc']:.3f} (network alone {figures['net_bpc']:.3f}); character trigram "
              f"bar {figures['trigram_bpc']:.3f}; {figures['chars']} characters, {figures['unk_chars']} unknown; "
              f"mixture weights {', '.join(f'{k} {v:.2f}' for k, v in figures['weights'].items())}")
        if not figures["same_corpus"]:
            print("note: this corpus differs from the one the bundle was trained on", file=sys.stderr)
    return 0


def run_generate(args: argparse.Namespace) -> int:
    import secrets

    sampler = Sampler.load(args.bundle, device=args.device)
    seed = args.random_seed if args.random_seed is not None else secrets.randbelow(2**31)
    sample = sampler.generate(SampleRequest(
        seed=args.seed, temperature=args.temperature, length=args.length, random_seed=seed, top_k=args.top_k,
        top_p=args.top_p, repetition_penalty=args.repetition_penalty, max_lines=args.max_lines,
        no_copy=args.no_copy))
    print(sample.text)
    notes = [f"random seed {seed}", f"{len(sample.copied_lines)} of its lines are verbatim training lines"]
    if sample.unknown:
        notes.append(f"not in the vocabulary: {' '.join(sample.unknown)}")
    print(f"\n({'; '.join(notes)})", file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": run_train, "evaluate": run_evaluate, "generate": run_generate}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CorpusError, TrainingError, BundleError, SamplingError, DeviceError,
            distributed.DistributedError) as exc:
        if getattr(args, "progress", None) == "jsonl":
            print(json.dumps({"event": "error", "message": str(exc)}, ensure_ascii=False), flush=True)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
