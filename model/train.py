"""Training: truncated BPTT over contiguous token streams, scored on the held-out tail every epoch.

Read top to bottom, as ``train`` runs it: ``setup`` (``prepare``: corpus → vocabulary → token streams; then the
network, optimiser and schedule, restored with ``--resume``) → ``fit`` (the epochs, with early stopping and
checkpoints) → ``finish`` (the served mixture, the metrics, the bundle) → ``announce``. The run's options are
one ``config.TrainConfig``; the same steps serve the CLI and the bot: they report through ``on_event`` (the
typed events of ``events.py``) and stop when ``should_stop`` says so.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from . import checkpoint, corpus, distributed
from .bpc import HeldoutSet, bpc_of, dev_and_test, shard, token_log2probs
from .checkpoint import LoopState
from .config import TrainConfig, TrainingError
from .events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    EpochEvent,
    Event,
    ResumeEvent,
    StartEvent,
    StepEvent,
    TimeLimitEvent,
)
from .mixture import Mixture, fit_mixture
from .network import LyricsNet, detach, spell
from .ngram import char_ngram_bpc
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
    spellings: dict[int, list[int]] = field(default_factory=dict)  # each spellable word's characters


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
    spellings = {
        i: [vocab.stoi[ch] for ch in token]
        for i, token in enumerate(vocab.itos)
        if len(token) > 1 and token != UNK and all(ch in vocab for ch in token)
    }
    return Prepared(vocab, train_ids, dev, test, rare, data.sha256, trigram_bpc, data.added, data, spellings)


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


@dataclass
class Run:
    """One training run: what ``setup`` builds, ``fit`` advances epoch by epoch and ``finish`` makes servable."""

    config: TrainConfig
    dist: distributed.Context
    device: torch.device
    emit: Callable[[Event], None]  # rank 0's reporter; a no-op on the other ranks
    should_stop: Callable[[], bool] | None
    data: Prepared
    net: LyricsNet
    model: nn.Module  # ``net``, wrapped in DistributedDataParallel on several processes
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    average: AveragedModel | None  # the served weights' moving average (--average)
    loop: LoopState  # the epoch, the best score and weights so far: what a checkpoint restores
    streams: tuple[torch.Tensor, torch.Tensor]  # this rank's rows of inputs and targets, for the next epoch
    rare: torch.Tensor
    started: float  # time.monotonic() when the first epoch began


@dataclass
class Trained:
    """The best epoch made servable: everything its bundle holds, and where the bundle is written."""

    path: Path
    net: LyricsNet  # plain: weight drop was for training only
    counted: list[int]  # the stream the count models count (the bundle's train_ids)
    mixture: Mixture
    metrics: dict[str, Any]


def train(
    config: TrainConfig, on_event: Callable[[Event], None] | None = None, should_stop: Callable[[], bool] | None = None
) -> Path:
    """Train, early-stop on held-out bpc, and write the best model as a bundle; return its path.

    The steps, each a function of its own: ``setup`` (corpus, network, optimiser, resume), ``fit`` (the epochs,
    early stopping, checkpoints), ``finish`` (the mixture fit, the metrics, the bundle) and ``announce``.
    ``python -m model train`` runs the same steps with the song-quality report between the last two.
    """
    run = setup(config, on_event, should_stop)
    fit(run)
    trained = finish(run)
    announce(run, trained)
    return trained.path


def setup(
    config: TrainConfig, on_event: Callable[[Event], None] | None = None, should_stop: Callable[[], bool] | None = None
) -> Run:
    """Everything the first epoch needs: the corpus encoded, the network, optimiser and schedule, restored from the
    checkpoint with ``--resume``; reports the run's start."""
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
    if config.resume:
        loop = checkpoint.load_checkpoint(config.checkpoint_path, net, optimizer, scheduler, data.vocab.itos, average)
        emit(ResumeEvent(epoch=loop.epoch, path=str(config.checkpoint_path)))
    if dist.rank:
        # Every rank starts from rank 0's weights (DDP broadcasts them); dropout must differ per rank.
        seed_everything(config.seed + 1_000_003 * dist.rank + loop.epoch)
    streams = epoch_streams(config, data, dist, device, loop.epoch + 1)
    emit(
        StartEvent(
            vocab=len(data.vocab),
            train_tokens=len(data.train_ids),
            heldout_tokens=len(data.dev.ids),
            heldout_chars=data.dev.chars,
            steps_per_epoch=math.ceil(streams[0].size(1) / config.seq_len),
            epochs=config.epochs,
            device=str(device),
            trigram_bpc=data.trigram_bpc,
            world_size=dist.world_size,
        )
    )
    return Run(
        config=config,
        dist=dist,
        device=device,
        emit=emit,
        should_stop=should_stop,
        data=data,
        net=net,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        average=average,
        loop=loop,
        streams=streams,
        rare=data.rare.to(device),
        started=time.monotonic(),
    )


def epoch_streams(
    config: TrainConfig, data: Prepared, dist: distributed.Context, device: torch.device, epoch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of inputs and of targets (the next token of each input) for ``epoch``.

    --batch-size counts streams over all processes; each rank trains on its own contiguous rows, so the
    carried state of truncated BPTT never crosses from one rank's text to another's.
    """
    rows = config.batch_size // dist.world_size
    mine = slice(dist.rank * rows, (dist.rank + 1) * rows)
    if not config.spell_dropout:
        streams = batchify(data.train_ids, config.batch_size)[mine]
        return streams[:, :-1].to(device), streams[:, 1:].to(device)
    inputs, targets = respell(
        data.train_ids, data.spellings, config.spell_dropout, config.seed * 100_003 + epoch, config.spell_whole
    )
    return batchify(inputs, config.batch_size)[mine].to(device), batchify(targets, config.batch_size)[mine].to(device)


def fit(run: Run) -> None:
    """Train epoch after epoch until --epochs, early stopping (--patience) or --max-minutes; rank 0 checkpoints
    every epoch. The best epoch's weights stay in ``run.loop.best_state``."""
    config, loop, dist = run.config, run.loop, run.dist
    while loop.epoch < config.epochs:
        epoch_start = time.monotonic()
        if config.spell_dropout:
            run.streams = epoch_streams(config, run.data, dist, run.device, loop.epoch + 1)
        train_loss = train_epoch(run)
        loop.epoch += 1
        improved, record = score_epoch(run, train_loss, epoch_start)
        run.emit(
            EpochEvent(
                **record,
                epochs=config.epochs,
                best_bpc=loop.best_bpc,
                improved=improved,
                elapsed=time.monotonic() - run.started,
            )
        )
        if dist.is_main:
            checkpoint.save_checkpoint(
                config.checkpoint_path,
                run.net,
                run.optimizer,
                run.scheduler,
                loop,
                run.data.vocab.itos,
                asdict(config),
                run.average,
            )
            run.emit(CheckpointEvent(epoch=loop.epoch, path=str(config.checkpoint_path)))
        if loop.bad_epochs >= config.patience:
            run.emit(EarlyStopEvent(epoch=loop.epoch, best_bpc=loop.best_bpc))
            break
        if dist.agree(bool(config.max_minutes) and time.monotonic() - run.started > config.max_minutes * 60):
            run.emit(TimeLimitEvent(epoch=loop.epoch))
            break


def train_epoch(run: Run) -> float:
    """The next epoch's pass (``run_epoch``); a peer process that stops mid-epoch is named as such."""
    try:
        return run_epoch(
            run.model,
            run.net,
            run.streams,
            run.rare,
            run.optimizer,
            run.config,
            run.loop.epoch + 1,
            run.dist,
            run.emit,
            run.should_stop,
            run.average,
        )
    except RuntimeError as exc:
        if run.dist.enabled and not isinstance(exc, (TrainingError, TrainingCancelled)):
            raise distributed.DistributedError(
                f"a peer process stopped in epoch {run.loop.epoch + 1}; resume from {run.config.checkpoint_path}"
            ) from exc
        raise


def score_epoch(run: Run, train_loss: float, epoch_start: float) -> tuple[bool, dict[str, float]]:
    """Score the served weights on dev, step the schedule, keep them if they are the best so far; return whether
    they improved and the epoch's record (appended to the history)."""
    loop = run.loop
    served = run.average.module if run.average is not None else run.net
    heldout_loss, bpc = evaluate_net(served, run.data.dev, run.device, run.dist)
    run.scheduler.step(bpc)
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
        "lr": run.optimizer.param_groups[0]["lr"],
        "seconds": time.monotonic() - epoch_start,
    }
    loop.history.append(record)
    return improved, record


def finish(run: Run) -> Trained:
    """The best epoch's weights in a plain network, the served mixture fit on dev, the metrics on test; rank 0
    writes the bundle."""
    data, config, loop = run.data, run.config, run.loop
    if loop.best_state is None:
        raise TrainingError("no epoch finished, so there is no model to save")
    net = LyricsNet(run.net.config).to(run.device)  # plain: weight drop was for training only
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
        run.device,
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
        "seconds": time.monotonic() - run.started,
    }
    trained = Trained(Path(config.out), net, counted, mixture, metrics)
    if run.dist.is_main:
        write_bundle(run, trained)
    return trained


def write_bundle(run: Run, trained: Trained) -> None:
    """Write (or rewrite, atomically) the serving bundle of ``trained``."""
    checkpoint.save_bundle(
        trained.path,
        trained.net,
        run.data.vocab.itos,
        trained.counted,
        trained.mixture,
        trained.metrics,
        run.loop.history,
        asdict(run.config),
        run.data.corpus_sha256,
        added_corpora=[added.to_dict() for added in run.data.added],
    )


def announce(run: Run, trained: Trained) -> None:
    """Report the bundle written, with its figures on test: the last event of a run."""
    metrics = trained.metrics
    run.emit(
        DoneEvent(
            path=str(trained.path),
            bpc=trained.mixture.bpc,
            static_bpc=metrics["static_bpc"],
            net_bpc=metrics["net_bpc"],
            trigram_bpc=run.data.trigram_bpc,
            heldout_chars=run.data.test.chars,
            unk_chars=run.data.test.unk_chars,
            epochs=run.loop.epoch,
            seconds=metrics["seconds"],
        )
    )
