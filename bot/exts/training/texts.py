"""What /train and /model info say: the progress message, a run's outcome, refusals, and the model embed.

The short texts are the catalogues' (bot/locales/, `training.*`), in the language of the member who asked
(for a run's messages: who started it).
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import discord

from bot import messages
from bot.engine import ModelInfo
from bot.i18n import Locale, text
from bot.jobs import JobState, JobStatus
from bot.messages import CONTENT_LIMIT
from bot.promotion import Promotion, SwapDecision, metric
from model.checkpoint import Bundle
from model.corpus import is_sample

BAR_WIDTH = 20


def moved_text(locale: Locale, url: str) -> str:
    """The reply, once the progress has moved to a channel message."""
    return text(locale, "training.moved", url=url)


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def duration(seconds: float | None) -> str:
    """1h 02m, 3m 05s, 42s."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _num(value: float | None, digits: int = 3) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------------------------------------
# a run


def corpus_words(locale: Locale, corpus: Path, added: list[Path]) -> str:
    """What a run trains on, for its progress message: the base corpus and how many files were added."""
    words = f"`{corpus.name}`"
    if is_sample(corpus):
        words += text(locale, "training.corpus_sample")
    if added:
        words += text(locale, f"training.corpus_added_{'one' if len(added) == 1 else 'other'}", count=len(added))
    return words


def progress_text(
    locale: Locale, status: JobStatus, *, options: str, started_by: str, corpus: str = "", now: float | None = None
) -> str:
    """The progress message while the job runs; `options` is StartOptions.describe(), `corpus` corpus_words()."""
    on = text(locale, "training.progress_on", corpus=corpus) if corpus else ""
    head = text(locale, "training.progress_head", on=on, options=options, who=messages.escape(started_by))
    elapsed = duration(status.elapsed(now))
    if status.training_since is None:
        return f"{head}\n" + text(locale, "training.progress_reading", elapsed=elapsed)
    fraction = status.fraction_done()
    where = text(locale, "training.progress_epoch", epoch=status.epoch, epochs=status.epochs)
    if status.steps and status.step and status.epoch < status.epochs:
        where += text(locale, "training.progress_step", step=status.step, steps=status.steps, next=status.epoch + 1)
    lines = [head, f"`{progress_bar(fraction)}` {fraction:.0%} · {where}"]
    if status.epoch > status.first_epoch or status.bpc is not None:
        losses = {
            "train": _num(status.train_loss),
            "heldout": _num(status.heldout_loss),
            "bpc": _num(status.bpc),
            "best": _num(status.best_bpc),
            "bar": _num(status.trigram_bpc),
        }
        lines.append(text(locale, "training.progress_losses", **losses))
    eta = status.eta(now)
    at_most = text(locale, "training.progress_at_most", eta=duration(eta)) if eta is not None else "?"
    lines.append(text(locale, "training.progress_eta", elapsed=elapsed, eta=at_most))
    if status.cancel_requested:
        lines.append(text(locale, "training.progress_cancelling"))
    return "\n".join(lines)


def failure_text(locale: Locale, status: JobStatus) -> str:
    """Why a run failed, for the public progress message: the reason in a sentence, never its stderr (which
    may hold paths, settings or a traceback: that goes to the log and to the owner who started the run)."""
    error = status.error or text(locale, "outcome.no_reason")
    return text(locale, "outcome.failed", elapsed=duration(status.elapsed()), error=error)


def stderr_text(locale: Locale, status: JobStatus, budget: int = CONTENT_LIMIT) -> str:
    """The last lines of a failed run's stderr, as much as fits in `budget` characters (an ephemeral reply)."""
    head = text(locale, "outcome.stderr_head")
    tail: list[str] = []
    room = budget - len(head) - 10
    for line in reversed(status.stderr_tail):
        line = line.replace("```", "'''")[:300]  # a stray code fence would end ours
        if room - len(line) - 1 < 0:
            break
        tail.insert(0, line)
        room -= len(line) + 1
    if not tail:
        return text(locale, "outcome.stderr_none")
    return head + "\n```\n" + "\n".join(tail) + "\n```"


def cancelled_text(locale: Locale, status: JobStatus, *, cancelled_by: str | None, checkpoint: Path) -> str:
    """A cancelled run: who stopped it, where, and whether `resume:true` can continue it."""
    by = text(locale, "outcome.cancelled_by", who=messages.escape(cancelled_by)) if cancelled_by else ""
    where = {"elapsed": duration(status.elapsed()), "epoch": status.epoch, "epochs": status.epochs}
    lines = [text(locale, "outcome.cancelled", by=by, **where)]
    if checkpoint.is_file():
        lines.append(text(locale, "outcome.cancelled_checkpoint", epoch=status.epoch))
    else:
        lines.append(text(locale, "outcome.cancelled_no_checkpoint"))
    lines.append(text(locale, "outcome.keeps_serving"))
    return "\n".join(lines)


def added_words(locale: Locale, added: list[dict], limit: int = 5) -> str:
    """A bundle's added files in words: "`a.txt` (120 lines), `b.txt` (30 lines)"."""
    shown = [
        text(locale, "outcome.added_file", name=a.get("name", "?"), lines=a.get("lines", "?")) for a in added[:limit]
    ]
    more = text(locale, "outcome.added_more", count=len(added) - limit) if len(added) > limit else ""
    return text(locale, "outcome.added_join").join(shown) + more


def finished_text(locale: Locale, status: JobStatus, promotion: Promotion, *, kept_at: Path) -> str:
    """A finished run: what it trained on, the scores before and after, and whether the new model went live."""
    new = promotion.candidate
    live = promotion.live
    live_metrics = promotion.live_metrics
    before = _num(metric(live_metrics, "bpc")) if live_metrics is not None else text(locale, "outcome.no_score")
    stopped = (
        text(locale, "outcome.stopped_early")
        if status.early_stopped
        else text(locale, "outcome.stopped_time_limit")
        if status.time_limited
        else ""
    )
    scores = {
        "before": before,
        "after": _num(metric(new.metrics, "bpc")),
        "net": _num(metric(new.metrics, "net_bpc")),
        "bar": _num(metric(new.metrics, "trigram_bpc")),
    }
    lines = [
        text(locale, "outcome.finished", elapsed=duration(status.elapsed()), epochs=len(new.history), stopped=stopped),
        text(locale, "outcome.scores", **scores),
    ]
    if added := new.added_corpora:
        trained_on = f"outcome.trained_on_{'one' if len(added) == 1 else 'other'}"
        lines.insert(1, text(locale, trained_on, count=len(added), files=added_words(locale, added)))
    if promotion.rescored is not None and live is not None:
        lines.append(text(locale, "outcome.rescored", there=_num(metric(live.metrics, "bpc")), here=before))
    elif promotion.rescore_error is not None:
        lines.append(text(locale, "outcome.rescore_failed", error=promotion.rescore_error))
    lines.append(decision_text(promotion.decision, locale))
    if promotion.error is not None:
        lines.append(text(locale, "outcome.not_made_live", error=promotion.error))
    elif not promotion.swapped:
        lines.append(text(locale, "outcome.kept_at", path=kept_at))
    return "\n".join(lines)


def decision_text(decision: SwapDecision, locale: Locale = None) -> str:
    """Whether the new model went live, and why, in a sentence with the numbers: one text per `Why`."""
    key = f"outcome.decision_{decision.why.name.lower()}"  # outcome.decision_not_better, ...
    return text(locale, key, new=_num(decision.new_bpc), old=_num(decision.old_bpc), error=decision.error)


def unusable_text(locale: Locale, error: object) -> str:
    """A run that finished with a bundle the engine would not load."""
    return text(locale, "outcome.unusable", error=error)


# ---------------------------------------------------------------------------------------------
# refusals and /train status


def state_words(locale: Locale, state: JobState) -> str:
    """A job's state in words: "finished", "已完成"."""
    return text(locale, f"job_state.{state.value}")


def already_running(locale: Locale, status: str) -> str:
    return text(locale, "training.already_running", status=status)


def no_corpus(locale: Locale, corpus: Path) -> str:
    return text(locale, "training.no_corpus", corpus=corpus)


def no_checkpoint(locale: Locale, checkpoint: Path) -> str:
    return text(locale, "training.no_checkpoint", checkpoint=checkpoint)


def could_not_start(locale: Locale, error: object) -> str:
    return text(locale, "training.could_not_start", error=error)


def already_ended(locale: Locale, state: JobState) -> str:
    return text(locale, "training.already_ended", state=state_words(locale, state))


def idle_text(locale: Locale, live: ModelInfo | None) -> str:
    if live is None:
        score = text(locale, "training.idle_no_model")
    else:
        score = text(locale, "training.idle_score", bpc=_num(metric(live.metrics, "bpc")))
    return text(locale, "training.idle", score=score)


def concluding_text(locale: Locale, state: JobState) -> str:
    return text(locale, "training.concluding", state=state_words(locale, state))


# ---------------------------------------------------------------------------------------------
# /model info


def model_embed(live: ModelInfo, locale: Locale) -> discord.Embed:
    """/model info: what the live model is, how it was trained, and how well it does on held-out text."""
    bundle: Bundle = live.bundle
    config = bundle.net.config
    metrics = bundle.metrics
    bpc, static, net_bpc, bar = (metric(metrics, key) for key in ("bpc", "static_bpc", "net_bpc", "trigram_bpc"))
    verdict = ""
    scored = static if static is not None else bpc
    if scored is not None and bar is not None:
        beats = scored < bar
        verdict = text(
            locale, "training.model_beats" if beats else "training.model_misses", margin=f"{abs(bar - scored):.3f}"
        )
    embed = discord.Embed(title=text(locale, "training.model_title"), colour=messages.EMBED_COLOUR)
    network = text(
        locale,
        "training.model_network_value",
        cell=config.cell.upper(),
        layers=text(locale, f"training.model_layers_{'one' if config.layers == 1 else 'other'}", count=config.layers),
        hidden=config.hidden,
        embed=config.embed,
        vocab=config.vocab_size,
        tied=text(locale, "training.model_tied") if config.tie_weights else "",
        dropout=config.dropout,
    )
    embed.add_field(
        name=text(locale, "training.model_network"),
        inline=False,
        value=f"{network}\n{precision_text(locale, live.precision)}",
    )
    train_config = bundle.train_config
    training = text(
        locale,
        "training.model_training_value",
        when=_trained_at(locale, bundle.created_at),
        epochs=len(bundle.history),
        seconds=duration(metric(metrics, "seconds")),
        batch=train_config.get("batch_size", "?"),
        seq=train_config.get("seq_len", "?"),
        lr=train_config.get("lr", "?"),
    )
    embed.add_field(name=text(locale, "training.model_training"), inline=False, value=training)
    corpus = f"`{Path(str(train_config.get('corpus', '?'))).name}` · sha256 `{bundle.corpus_sha256[:16]}`"
    if bundle.added_corpora:
        corpus += text(locale, "training.model_added", files=added_words(locale, bundle.added_corpora))
    embed.add_field(name=text(locale, "training.model_corpus"), inline=False, value=corpus[:1024])
    scores = {"bpc": _num(bpc), "static": _num(static), "net": _num(net_bpc), "bar": _num(bar), "verdict": verdict}
    embed.add_field(
        name=text(locale, "training.model_heldout"), inline=False, value=text(locale, "training.model_bpc", **scores)
    )
    if isinstance(metrics.get("judge"), dict):
        embed.add_field(
            name=text(locale, "training.model_songs"), inline=False, value=judge_text(locale, metrics["judge"])
        )
    embed.set_footer(text=text(locale, "training.model_footer", hash=live.bundle_hash[:12], file=live.path.name))
    return embed


def precision_text(locale: Locale, precision: str | None) -> str:
    """What the network multiplies in here: songs differ between precisions, so a random_seed replays the same
    song only on a host that writes in the same one (LYRICS_PRECISION; auto picks by the CPU)."""
    if precision is None:
        return text(locale, "training.model_precision_unknown")
    return text(locale, "training.model_precision", precision=precision)


def judge_text(locale: Locale, report: dict[str, Any]) -> str:
    """The song-quality report a bundle keeps, beside the corpus' own figures."""

    def pair(key: str, fmt: str) -> str:
        song, corpus = metric(report, key), metric(report, f"corpus_{key}")
        shown = format(song, fmt) if song is not None else "?"
        return text(locale, "judge.pair", song=shown, corpus=format(corpus, fmt) if corpus is not None else "?")

    figures = {
        "rhyme": pair("rhyme", ".0%"),
        "line_mean": pair("line_mean", ".1f"),
        "char_auc": _num(metric(report, "char_auc"), 2),
        "syntax_auc": _num(metric(report, "syntax_auc"), 2),
        "wordlike": pair("wordlike", ".2f"),
        "verbatim": pair("verbatim", ".1%"),
        "novel_ngrams": pair("novel_ngrams", ".1%"),
        "loops": pair("loops", ".1%"),
    }
    lines = [text(locale, "judge.report", **figures)]
    # Bundles judged before the song-level figures existed carry none: leave the line out rather than show "?".
    if "seed_returns" in report:
        as_songs = {
            "seed_returns": pair("seed_returns", ".0%"),
            "coherence": pair("coherence", ".2f"),
            "window_auc": _num(metric(report, "window_auc"), 2),
            "chorus": pair("chorus", ".0%"),
            "patchwork": pair("patchwork", ".1%"),
        }
        lines.append(text(locale, "judge.as_songs", **as_songs))
    met, targets = metric(report, "targets_met"), metric(report, "targets")
    if met is not None and targets:
        lines.append(text(locale, "judge.targets", met=f"{met:.0f}", targets=f"{targets:.0f}"))
    return "\n".join(lines)[:1024]


def _trained_at(locale: Locale, created_at: str) -> str:
    """A Discord timestamp (shown in each reader's time zone) when the bundle's ISO date parses."""
    try:
        return discord.utils.format_dt(datetime.fromisoformat(created_at), "f")
    except ValueError:
        return created_at or text(locale, "training.model_unknown_date")
