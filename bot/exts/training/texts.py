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
from bot.promotion import Promotion, SwapDecision, Why, metric
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


def failure_text(status: JobStatus) -> str:
    """Why a run failed, for the public progress message: the reason in a sentence, never its stderr (which
    may hold paths, settings or a traceback: that goes to the log and to the owner who started the run)."""
    return (
        f"**Training failed** after {duration(status.elapsed())}: {status.error or 'no reason given'}.\n"
        "The live model keeps serving. The last lines the training process wrote are in the bot's log; "
        "`/train status` shows them to the bot's owners."
    )


def stderr_text(status: JobStatus, budget: int = CONTENT_LIMIT) -> str:
    """The last lines of a failed run's stderr, as much as fits in `budget` characters (an ephemeral reply)."""
    head = "Last lines of the training process' stderr (only you can see this):"
    tail: list[str] = []
    room = budget - len(head) - 10
    for line in reversed(status.stderr_tail):
        line = line.replace("```", "'''")[:300]  # a stray code fence would end ours
        if room - len(line) - 1 < 0:
            break
        tail.insert(0, line)
        room -= len(line) + 1
    if not tail:
        return "The training process wrote nothing on stderr."
    return head + "\n```\n" + "\n".join(tail) + "\n```"


def cancelled_text(status: JobStatus, *, cancelled_by: str | None, checkpoint: Path) -> str:
    who = f" by {messages.escape(cancelled_by)}" if cancelled_by else ""
    text = f"**Training cancelled**{who} after {duration(status.elapsed())}, at epoch {status.epoch}/{status.epochs}."
    if checkpoint.is_file():
        text += (
            f"\nThe last checkpoint is kept: `/train start resume:true` continues from it "
            f"(pass a larger `epochs` than {status.epoch} to train further)."
        )
    else:
        text += "\nNo epoch had finished, so there is no checkpoint to resume from."
    return text + "\nThe live model keeps serving."


def added_words(added: list[dict], limit: int = 5) -> str:
    """A bundle's added files in words: "`a.txt` (120 lines), `b.txt` (30 lines)"."""
    shown = [f"`{a.get('name', '?')}` ({a.get('lines', '?')} lines)" for a in added[:limit]]
    more = f" and {len(added) - limit} more" if len(added) > limit else ""
    return ", ".join(shown) + more


def finished_text(status: JobStatus, promotion: Promotion, *, kept_at: Path) -> str:
    """A finished run: what it trained on, the scores before and after, and whether the new model went live."""
    new = promotion.candidate
    live = promotion.live
    live_metrics = promotion.live_metrics
    before = _num(metric(live_metrics, "bpc")) if live_metrics is not None else "none"
    stopped = (
        " (stopped early: no better held-out score)"
        if status.early_stopped
        else " (stopped at the time limit)"
        if status.time_limited
        else ""
    )
    lines = [
        f"**Training finished** in {duration(status.elapsed())}: {len(new.history)} epochs{stopped}.",
        f"Held-out bpc: live model {before} → new model {_num(metric(new.metrics, 'bpc'))} "
        f"(network alone {_num(metric(new.metrics, 'net_bpc'))}; "
        f"character-trigram bar {_num(metric(new.metrics, 'trigram_bpc'))}).",
    ]
    if new.added_corpora:
        lines.insert(
            1,
            f"Trained on the base corpus and {len(new.added_corpora)} added file"
            f"{'s' if len(new.added_corpora) != 1 else ''}: {added_words(new.added_corpora)}; "
            "scored on the base corpus' held-out text.",
        )
    if promotion.rescored is not None and live is not None:
        lines.append(
            "The live model had been scored on other held-out text (another base corpus), so it was re-scored "
            f"on the new model's: {_num(metric(live.metrics, 'bpc'))} there, {before} here."
        )
    elif promotion.rescore_error is not None:
        lines.append(
            f"The live model had been scored on other held-out text, and re-scoring it failed: "
            f"{promotion.rescore_error}."
        )
    lines.append(decision_text(promotion.decision))
    if promotion.error is not None:
        lines.append(f"**But it could not be made live**: {promotion.error}. The previous model keeps serving.")
    elif not promotion.swapped:
        lines.append(f"The new bundle is kept at `{kept_at}`.")
    return "\n".join(lines)


def decision_text(decision: SwapDecision) -> str:
    """Whether the new model went live, and why, in a sentence with the numbers."""
    new, old = _num(decision.new_bpc), _num(decision.old_bpc)
    match decision.why:
        case Why.NO_LIVE_MODEL:
            return "There was no live model, so the new one is now live."
        case Why.FORCED:
            return "force:true was given, so the new model is now live whatever its score."
        case Why.NO_CANDIDATE_SCORE:
            return "The new model has no held-out bpc to compare, so the live model stays."
        case Why.NO_LIVE_SCORE:
            return "The live model has no held-out bpc to compare against, so the new one is now live."
        case Why.BETTER:
            return f"The new model is better ({new} < {old} bpc), so it is now live."
        case Why.NOT_BETTER:
            return (
                f"The live model stays: its held-out bpc {old} is not worse than the new model's "
                f"{new} (lower is better). Use force:true to swap anyway."
            )
        case Why.RESCORE_FAILED:
            return (
                "The live model was scored on other held-out text and re-scoring it failed "
                f"({decision.error}), so the two cannot be compared: the live model stays. "
                "Use force:true to swap anyway."
            )


def unusable_text(error: object) -> str:
    return f"**Training finished, but its bundle is unusable**: {error}\nThe live model keeps serving."


# ---------------------------------------------------------------------------------------------
# refusals and /train status


def already_running(locale: Locale, status: str) -> str:
    return text(locale, "training.already_running", status=status)


def no_corpus(locale: Locale, corpus: Path) -> str:
    return text(locale, "training.no_corpus", corpus=corpus)


def no_checkpoint(locale: Locale, checkpoint: Path) -> str:
    return text(locale, "training.no_checkpoint", checkpoint=checkpoint)


def could_not_start(locale: Locale, error: object) -> str:
    return text(locale, "training.could_not_start", error=error)


def already_ended(locale: Locale, state: JobState) -> str:
    return text(locale, "training.already_ended", state=state)


def idle_text(locale: Locale, live: ModelInfo | None) -> str:
    if live is None:
        score = text(locale, "training.idle_no_model")
    else:
        score = text(locale, "training.idle_score", bpc=_num(metric(live.metrics, "bpc")))
    return text(locale, "training.idle", score=score)


def concluding_text(locale: Locale, state: JobState) -> str:
    return text(locale, "training.concluding", state=state)


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
        when=_trained_at(bundle.created_at),
        epochs=len(bundle.history),
        seconds=duration(metric(metrics, "seconds")),
        batch=train_config.get("batch_size", "?"),
        seq=train_config.get("seq_len", "?"),
        lr=train_config.get("lr", "?"),
    )
    embed.add_field(name=text(locale, "training.model_training"), inline=False, value=training)
    corpus = f"`{Path(str(train_config.get('corpus', '?'))).name}` · sha256 `{bundle.corpus_sha256[:16]}`"
    if bundle.added_corpora:
        corpus += text(locale, "training.model_added", files=added_words(bundle.added_corpora))
    embed.add_field(name=text(locale, "training.model_corpus"), inline=False, value=corpus[:1024])
    scores = {"bpc": _num(bpc), "static": _num(static), "net": _num(net_bpc), "bar": _num(bar), "verdict": verdict}
    embed.add_field(
        name=text(locale, "training.model_heldout"), inline=False, value=text(locale, "training.model_bpc", **scores)
    )
    if isinstance(metrics.get("judge"), dict):
        embed.add_field(name=text(locale, "training.model_songs"), inline=False, value=judge_text(metrics["judge"]))
    embed.set_footer(text=f"bundle {live.bundle_hash[:12]} · {live.path.name}")
    return embed


def precision_text(locale: Locale, precision: str | None) -> str:
    """What the network multiplies in here: songs differ between precisions, so a random_seed replays the same
    song only on a host that writes in the same one (LYRICS_PRECISION; auto picks by the CPU)."""
    if precision is None:
        return text(locale, "training.model_precision_unknown")
    return text(locale, "training.model_precision", precision=precision)


def judge_text(report: dict[str, Any]) -> str:
    """The song-quality report a bundle keeps, beside the corpus' own figures."""

    def pair(key: str, fmt: str) -> str:
        song, corpus = metric(report, key), metric(report, f"corpus_{key}")
        shown = format(song, fmt) if song is not None else "?"
        return f"{shown} (corpus {format(corpus, fmt) if corpus is not None else '?'})"

    met, targets = metric(report, "targets_met"), metric(report, "targets")
    # Bundles judged before the song-level figures existed carry none: leave the line out rather than show "?".
    as_songs = (
        f"\nas songs: first line's word returns {pair('seed_returns', '.0%')} · coherence "
        f"{pair('coherence', '.2f')} · 4-line window AUC {_num(metric(report, 'window_auc'), 2)} · chorus "
        f"{pair('chorus', '.0%')} · characters in corpus 5-grams {pair('patchwork', '.1%')}"
        if "seed_returns" in report
        else ""
    )
    return (
        f"rhyming neighbours {pair('rhyme', '.0%')} · characters per line {pair('line_mean', '.1f')}\n"
        f"fluency AUC, 0.5 = reads like the corpus: characters {_num(metric(report, 'char_auc'), 2)} · "
        f"syntax {_num(metric(report, 'syntax_auc'), 2)} · word-likeness {pair('wordlike', '.2f')}\n"
        f"lines copied {pair('verbatim', '.1%')} · new 8-character phrases {pair('novel_ngrams', '.1%')} · "
        f"songs that loop {pair('loops', '.1%')}"
        + as_songs
        + (f"\n{met:.0f} of {targets:.0f} song targets met" if met is not None and targets else "")
    )[:1024]


def _trained_at(created_at: str) -> str:
    """A Discord timestamp (shown in each reader's time zone) when the bundle's ISO date parses."""
    try:
        return discord.utils.format_dt(datetime.fromisoformat(created_at), "f")
    except ValueError:
        return created_at or "unknown date"
