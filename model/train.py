"""Training: truncated BPTT over contiguous token streams, scored on the held-out tail every epoch.

Read top to bottom: ``prepare`` (corpus → vocabulary → token streams) → ``train`` (the loop, with
early stopping, checkpoints and resume) → a serving bundle. The run's options are one
``config.TrainConfig``; the same loop serves the CLI and the bot: it reports through ``on_event``
(the typed events of ``events.py``) and stops when ``should_stop`` says so.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from . import checkpoint, corpus, distributed, judge
from .bpc import HeldoutSet, bpc_of, dev_and_test, shard, token_log2probs
from .checkpoint import LoopState
from .config import TrainConfig, TrainingError
from .events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    EpochEvent,
    Event,
    JudgingEvent,
    ResumeEvent,
    StartEvent,
    StepEvent,
    TimeLimitEvent,
)
from .mixture import fit_mixture
from .network import LyricsNet, detach, spell
from .ngram import char_ngram_bpc
from .sample import Sampler
from .vocab import UNK, Vocab, segment


class TrainingCancelled(RuntimeError):
    """``should_stop`` asked the loop to stop; the last checkpoint is kept for ``--resume``."""


@dataclass
class Prepared:
    """The corpus turned into what the loop consumes."""

    vocab: Vocab
    train_ids: list[int]
    dev: HeldoutSet  # early stopping, the learning rate, the mixture weights
    test: HeldoutSet  # only reported
    rare: torch.Tensor  # bool per vocabulary id: seen once in training, sometimes shown as <unk>
    corpus_sha256: str  # of the base corpus, whose tail dev and test are
    trigram_bpc: float  # the character-trigram bar, on test
    added: tuple[corpus.AddedText, ...] = ()  # texts that joined the training part (--added-corpora)
    source: corpus.Corpus | None = None  # the text itself, for the song-quality report


def prepare(config: TrainConfig) -> Prepared:
    """Read and split the corpus (added texts join the training part), build the vocabulary, encode every part."""
    data = corpus.load_corpus(config.corpus, config.heldout_fraction, config.added_corpora or None)
    train_words = segment(data.train)
    vocab = Vocab.build(train_words, config.min_count)
    train_ids = vocab.words_to_ids(train_words).ids
    dev, test = dev_and_test(vocab, train_ids, data.dev, data.test)
    counts = Counter(train_ids)
    rare = torch.tensor([counts[i] == 1 for i in range(len(vocab))])
    trigram_bpc = char_ngram_bpc(data.train + data.dev, data.test)
    return Prepared(vocab, train_ids, dev, test, rare, data.sha256, trigram_bpc, data.added, data)


def judge_bundle(path: Path, source: corpus.Corpus, songs: int) -> dict[str, float]:
    """The song-quality report's figures for the bundle at ``path``, as its metrics keep them (/model info)."""
    sampler = Sampler(checkpoint.load_bundle(path), torch.device("cpu"))
    return judge.summary(judge.judge(sampler, source, songs))


def build_net(config: TrainConfig, vocab: Vocab) -> LyricsNet:
    """A fresh network for ``vocab``; composing words, it carries their spellings (a buffer: bundles keep it)."""
    if config.compose == "none":
        return LyricsNet(config.net_config(len(vocab)))
    spelling, chars = spell(vocab.itos, symbols=(UNK,))
    return LyricsNet(config.net_config(len(vocab), chars, spelling.size(1)), spelling)


def warm_ema(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | int], torch.Tensor]:
    """An exponential moving average with ``decay`` per update that starts as the plain mean of the updates so far.

    Until 1 / (1 - decay) updates have been averaged, each counts equally (decay n / (n + 1)); a fixed decay
    from the first update would keep a short run's average close to its random start.
    """

    def average(averaged: torch.Tensor, current: torch.Tensor, updates: torch.Tensor | int) -> torch.Tensor:
        n = int(updates)
        rate = min(decay, n / (n + 1))
        return averaged + (current - averaged) * (1 - rate)

    return average


def batchify(ids: list[int], batch_size: int) -> torch.Tensor:
    """Cut the token stream into ``batch_size`` contiguous streams, one row each."""
    per_row = len(ids) // batch_size
    if per_row < 2:
        raise TrainingError(f"the training text has {len(ids)} tokens: too few for --batch-size {batch_size}")
    return torch.tensor(ids[: per_row * batch_size], dtype=torch.long).view(batch_size, per_row)


def respell(
    ids: list[int], spellings: dict[int, list[int]], rate: float, seed: int, whole_targets: bool = True
) -> tuple[list[int], list[int]]:
    """The training stream as (inputs, targets), with each word in ``spellings`` spelled at ``rate``.

    ``targets[i]`` is what the network must predict after ``inputs[i]``. The vocabulary already spells every
    rare word with its characters, so scoring or writing a rare word means going from character to
    character; words spelled now and then in training teach the network how words go character by character
    (subword regularisation, as BPE-dropout). With ``whole_targets`` a spelled word is still *predicted* whole
    (the token before it has the word as its target) and only its own characters follow one another: text is
    scored and written in the vocabulary's one spelling, where a spelled-out known word never occurs, so no
    probability is spent on predicting one. ``seed`` makes an epoch's spelling the same on every process and
    after a resume.
    """
    if rate <= 0 or not spellings:
        return ids[:-1], ids[1:]
    draws = torch.rand(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()
    inputs: list[int] = []
    targets: list[int] = []
    for token, draw in zip(ids, draws, strict=True):
        chars = spellings.get(token)
        units = chars if chars is not None and draw < rate else [token]
        if inputs:  # the previous input's target: this word, whole or by its first character
            targets.append(token if whole_targets else units[0])
        inputs.extend(units)
        targets.extend(units[1:])  # inside a spelled word, each character predicts the next
    return inputs[:-1], targets


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def evaluate_net(
    net: LyricsNet, heldout: HeldoutSet, device: torch.device, dist: distributed.Context
) -> tuple[float, float]:
    """Held-out (loss in nats per token, bits per character); each rank scores its share, sums are reduced."""
    part = shard(heldout, dist.rank, dist.world_size)
    log2p = token_log2probs(net, part, device)
    token_bits = dist.sum(-float(log2p.sum()))
    # The loss is per token in nats, like the training loss; bpc also pays for spelling unseen characters.
    return token_bits * math.log(2) / len(heldout.ids), bpc_of(token_bits, heldout)


def run_epoch(
    model: nn.Module,
    net: LyricsNet,
    streams: tuple[torch.Tensor, torch.Tensor],
    rare: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    epoch: int,
    dist: distributed.Context,
    emit: Callable[[Event], None],
    should_stop: Callable[[], bool] | None,
    average: AveragedModel | None = None,
) -> float:
    """One pass over this rank's (inputs, targets) rows, state carried between batches; returns the mean train loss."""
    net.train()
    inputs, targets = streams
    device = inputs.device
    steps = math.ceil(inputs.size(1) / config.seq_len)
    state = None
    total = 0.0
    for step, i in enumerate(range(0, inputs.size(1), config.seq_len)):
        if dist.agree(bool(should_stop and should_stop())):
            raise TrainingCancelled(f"cancelled in epoch {epoch}; resume from {config.checkpoint_path}")
        x = inputs[:, i : i + config.seq_len]
        y = targets[:, i : i + config.seq_len]
        # Show rare tokens as <unk> part of the time, so <unk> gets a learned probability.
        x = x.masked_fill(rare[x] & (torch.rand(x.shape, device=device) < config.unk_rate), 0)
        y = y.masked_fill(rare[y] & (torch.rand(y.shape, device=device) < config.unk_rate), 0)
        logits, state = model(x, detach(state))
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        value = loss.item()
        if not math.isfinite(value) or value > 50:
            raise TrainingError(f"the loss became {value:.3g} in epoch {epoch}: lower --lr or --clip and retry")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), config.clip)
        optimizer.step()
        if average is not None:
            average.update_parameters(net)
        total += value
        emit(StepEvent(epoch=epoch, step=step + 1, steps=steps, loss=value))
    return dist.mean(total / steps)


def train(
    config: TrainConfig, on_event: Callable[[Event], None] | None = None, should_stop: Callable[[], bool] | None = None
) -> Path:
    """Train, early-stop on held-out bpc, and write the best model as a bundle; return its path."""
    dist = distributed.context()
    # Only rank 0 reports, so a torchrun job's stdout reads like a single process'.
    emit = on_event if on_event is not None and dist.is_main else (lambda event: None)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = dist.device(config.device)
    if config.batch_size % dist.world_size:
        raise TrainingError(
            f"--batch-size {config.batch_size} is the global batch: make it a multiple of the "
            f"{dist.world_size} processes"
        )
    seed_everything(config.seed)
    data = prepare(config)
    net = build_net(config, data.vocab).to(device)
    net.set_weight_drop(config.weight_drop)
    model = dist.wrap(net)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience
    )
    # The served weights: an exponential moving average of the trained ones, which sits in a flatter,
    # better-generalising spot than any single step's (Polyak averaging, as AWD-LSTM's ASGD).
    average = AveragedModel(net, avg_fn=warm_ema(config.average), use_buffers=False) if config.average else None
    loop = LoopState()
    ckpt_path = config.checkpoint_path
    if config.resume:
        loop = checkpoint.load_checkpoint(ckpt_path, net, optimizer, scheduler, data.vocab.itos, average)
        emit(ResumeEvent(epoch=loop.epoch, path=str(ckpt_path)))
    if dist.rank:
        # Every rank starts from rank 0's weights (DDP broadcasts them); dropout must differ per rank.
        seed_everything(config.seed + 1_000_003 * dist.rank + loop.epoch)

    # --batch-size counts streams over all processes; each rank trains on its own contiguous rows, so the
    # carried state of truncated BPTT never crosses from one rank's text to another's.
    rows = config.batch_size // dist.world_size
    spellings = {
        i: [data.vocab.stoi[ch] for ch in token]
        for i, token in enumerate(data.vocab.itos)
        if len(token) > 1 and token != UNK and all(ch in data.vocab for ch in token)
    }

    def epoch_streams(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's rows of inputs and of targets (the next token of each input) for ``epoch``."""
        if not config.spell_dropout:
            streams = batchify(data.train_ids, config.batch_size)[dist.rank * rows : (dist.rank + 1) * rows]
            return streams[:, :-1].to(device), streams[:, 1:].to(device)
        inputs, targets = respell(
            data.train_ids, spellings, config.spell_dropout, config.seed * 100_003 + epoch, config.spell_whole
        )
        mine = slice(dist.rank * rows, (dist.rank + 1) * rows)
        return batchify(inputs, config.batch_size)[mine].to(device), batchify(targets, config.batch_size)[mine].to(
            device
        )

    streams = epoch_streams(loop.epoch + 1)
    rare = data.rare.to(device)
    steps_per_epoch = math.ceil(streams[0].size(1) / config.seq_len)
    emit(
        StartEvent(
            vocab=len(data.vocab),
            train_tokens=len(data.train_ids),
            heldout_tokens=len(data.dev.ids),
            heldout_chars=data.dev.chars,
            steps_per_epoch=steps_per_epoch,
            epochs=config.epochs,
            device=str(device),
            trigram_bpc=data.trigram_bpc,
            world_size=dist.world_size,
        )
    )
    started = time.monotonic()

    while loop.epoch < config.epochs:
        epoch_start = time.monotonic()
        if config.spell_dropout:
            streams = epoch_streams(loop.epoch + 1)
        try:
            train_loss = run_epoch(
                model, net, streams, rare, optimizer, config, loop.epoch + 1, dist, emit, should_stop, average
            )
        except RuntimeError as exc:
            if dist.enabled and not isinstance(exc, (TrainingError, TrainingCancelled)):
                raise distributed.DistributedError(
                    f"a peer process stopped in epoch {loop.epoch + 1}; resume from {ckpt_path}"
                ) from exc
            raise
        loop.epoch += 1
        served = average.module if average is not None else net
        heldout_loss, bpc = evaluate_net(served, data.dev, device, dist)
        scheduler.step(bpc)
        improved = bpc < loop.best_bpc - 1e-4
        if improved:
            loop.best_bpc, loop.bad_epochs = bpc, 0
            loop.best_state = served.plain_state_dict()
        else:
            loop.bad_epochs += 1
        record = {
            "epoch": loop.epoch,
            "train_loss": train_loss,
            "heldout_loss": heldout_loss,
            "bpc": bpc,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.monotonic() - epoch_start,
        }
        loop.history.append(record)
        emit(
            EpochEvent(
                **record,
                epochs=config.epochs,
                best_bpc=loop.best_bpc,
                improved=improved,
                elapsed=time.monotonic() - started,
            )
        )
        if dist.is_main:
            checkpoint.save_checkpoint(
                ckpt_path, net, optimizer, scheduler, loop, data.vocab.itos, asdict(config), average
            )
            emit(CheckpointEvent(epoch=loop.epoch, path=str(ckpt_path)))
        if loop.bad_epochs >= config.patience:
            emit(EarlyStopEvent(epoch=loop.epoch, best_bpc=loop.best_bpc))
            break
        if dist.agree(bool(config.max_minutes) and time.monotonic() - started > config.max_minutes * 60):
            emit(TimeLimitEvent(epoch=loop.epoch))
            break

    if loop.best_state is None:
        raise TrainingError("no epoch finished, so there is no model to save")
    net = LyricsNet(net.config).to(device)  # plain: weight drop was for training only
    net.load_state_dict(loop.best_state)
    # The count models of the served mixture count this stream (the bundle's train_ids): the training text, and
    # with --count-dev the dev text after it, once dev has fit the mixture's weights (the bar counts it too).
    counted = data.train_ids + data.dev.ids if config.count_dev else data.train_ids
    mixture = fit_mixture(
        net,
        len(data.vocab),
        data.train_ids,
        data.dev,
        data.test,
        device,
        config.ngram_order,
        cache_weight=config.cache_weight,
        counted_ids=counted,
    )
    metrics = {
        "bpc": mixture.bpc,
        "static_bpc": mixture.parts["static"],
        "net_bpc": mixture.parts["net"],
        "dev_net_bpc": loop.best_bpc,
        "trigram_bpc": data.trigram_bpc,
        "heldout_chars": data.test.chars,
        "unk_chars": data.test.unk_chars,
        "epochs": loop.epoch,
        "seconds": time.monotonic() - started,
    }
    out = Path(config.out)
    if dist.is_main:

        def write_bundle() -> None:
            checkpoint.save_bundle(
                out,
                net,
                data.vocab.itos,
                counted,
                mixture,
                metrics,
                loop.history,
                asdict(config),
                data.corpus_sha256,
                added_corpora=[added.to_dict() for added in data.added],
            )

        write_bundle()
        if config.judge_songs and data.source is not None:
            # The report writes songs from the bundle as it is served, so it comes after the bundle, into it.
            emit(JudgingEvent(songs=config.judge_songs))
            metrics["judge"] = judge_bundle(out, data.source, config.judge_songs)
            metrics["seconds"] = time.monotonic() - started
            write_bundle()
    emit(
        DoneEvent(
            path=str(out),
            bpc=mixture.bpc,
            static_bpc=metrics["static_bpc"],
            net_bpc=metrics["net_bpc"],
            trigram_bpc=data.trigram_bpc,
            heldout_chars=data.test.chars,
            unk_chars=data.test.unk_chars,
            epochs=loop.epoch,
            seconds=metrics["seconds"],
        )
    )
    return out
