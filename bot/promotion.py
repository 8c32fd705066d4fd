"""Promoting a candidate bundle: does it beat the live model, and if so, move it in and make it live. No Discord.

    promoter = Promoter(engine, rescore=rescore_on(Path("data/jaychou_lyrics.txt.zip")))
    promotion = await promoter.promote("models/lyrics.candidate.pt", "models/lyrics.pt", force=False)
    promotion.decision.why, promotion.swapped       # bot/exts/training/texts.py puts them in words

In order: the engine loads the candidate once, in its worker thread, without making it live; if the live
model was scored on other held-out text (another base corpus, or another split: `same_heldout`), it is
re-scored on the candidate's first, in the worker thread too (it runs the live network, which only that
thread runs); `decide_swap` compares held-out bits per character; only then are files touched (the old
bundle kept as *.previous, the new one moved in by os.replace) and the engine told to serve the new model.
Requests already running finish on the old one. Nothing changes when anything before the move fails, and a
move that fails is put back: a restart serves what serves now.

Built on three engine primitives: `Engine.load_candidate` (load, do not serve), `Engine.on_worker` (run a
function in the model's thread) and `Engine.go_live` (serve a loaded sampler).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.checkpoint import Bundle
from model.errors import first_line
from model.evaluate import evaluate_bundle
from model.files import fsync_dir

if TYPE_CHECKING:
    from bot.engine import Engine, ModelInfo

log = logging.getLogger(__name__)

# Scores the live bundle (first argument) on the held-out text of the candidate (second); runs in the worker
# thread, so it may use the live network. Raises what it likes: the promotion reports it, nothing swaps.
Rescorer = Callable[[Bundle, Bundle], dict[str, Any]]


class Why(enum.Enum):
    """Why a candidate does or does not replace the live model."""

    NO_LIVE_MODEL = "no live model"  # swap: nothing serves yet
    FORCED = "forced"  # swap: force was given, whatever the scores
    NO_CANDIDATE_SCORE = "no candidate score"  # keep: the candidate has no held-out bpc
    NO_LIVE_SCORE = "no live score"  # swap: the live model has none to compare against
    BETTER = "better"  # swap: the candidate's bpc is lower
    NOT_BETTER = "not better"  # keep: the live model's bpc is lower or equal (a tie keeps what is known to work)
    RESCORE_FAILED = "rescore failed"  # keep: the live model could not be scored on the candidate's text


@dataclass(frozen=True)
class SwapDecision:
    """Whether the candidate replaces the live model, why, and the figures the decision compared."""

    swap: bool
    why: Why
    new_bpc: float | None = None  # the candidate's held-out bpc
    old_bpc: float | None = None  # the live model's, on the same held-out text
    error: str | None = None  # RESCORE_FAILED: what went wrong


@dataclass(frozen=True)
class Promotion:
    """What `Promoter.promote` did with a candidate bundle."""

    candidate: Bundle  # loaded once, for the decision and for the report
    live: ModelInfo | None  # what served before (and still serves unless swapped)
    decision: SwapDecision
    swapped: bool = False
    error: str | None = None  # why a swap that was decided did not happen (the old model keeps serving)
    rescored: dict[str, Any] | None = None  # the live model's metrics on the candidate's held-out text
    rescore_error: str | None = None  # why re-scoring the live model failed (then nothing compares)

    @property
    def live_metrics(self) -> dict[str, Any] | None:
        """The live model's metrics the decision compared: re-scored ones if it was re-scored."""
        if self.rescored is not None:
            return self.rescored
        return self.live.metrics if self.live is not None else None


def same_heldout(live: Bundle, candidate: Bundle) -> bool:
    """Whether two bundles' held-out scores are on the same text: the same base corpus, split the same way."""
    return live.corpus_sha256 == candidate.corpus_sha256 and live.heldout_fraction == candidate.heldout_fraction


def metric(metrics: dict[str, Any] | None, key: str) -> float | None:
    """A finite number from a bundle's metrics, or None."""
    value = (metrics or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def decide_swap(live: dict[str, Any] | None, candidate: dict[str, Any], *, force: bool) -> SwapDecision:
    """Compare held-out bits per character (metrics["bpc"], lower is better) of the live and the new model."""
    new = metric(candidate, "bpc")
    old = metric(live, "bpc") if live is not None else None
    if live is None:
        return SwapDecision(True, Why.NO_LIVE_MODEL, new, old)
    if force:
        return SwapDecision(True, Why.FORCED, new, old)
    if new is None:
        return SwapDecision(False, Why.NO_CANDIDATE_SCORE, new, old)
    if old is None:
        return SwapDecision(True, Why.NO_LIVE_SCORE, new, old)
    if new < old:
        return SwapDecision(True, Why.BETTER, new, old)
    return SwapDecision(False, Why.NOT_BETTER, new, old)


def sibling(path: Path, tag: str) -> Path:
    """models/lyrics.pt -> models/lyrics.<tag>.pt: beside the live bundle, so os.replace onto it is atomic."""
    return path.with_name(f"{path.stem}.{tag}{path.suffix or '.pt'}")


def rescore_on(corpus: Path) -> Rescorer:
    """A rescorer that scores the live model on `corpus` split as the candidate's was: the held-out text the
    candidate was trained beside and scored on. It refuses if the corpus changed while the candidate trained."""

    def rescore(live: Bundle, candidate: Bundle) -> dict[str, Any]:
        device = next(live.net.parameters()).device
        figures = evaluate_bundle(live, corpus, device, heldout_fraction=candidate.heldout_fraction)
        if figures["corpus_sha256"] != candidate.corpus_sha256:
            raise ValueError(f"{corpus} changed while the new model trained, so its held-out text is gone")
        return figures

    return rescore


class Promoter:
    """Decides whether a candidate replaces the engine's live model, and carries the swap out; see the module
    docstring. Without `rescore`, scores on other held-out text compare as they are."""

    def __init__(self, engine: Engine, *, rescore: Rescorer | None = None) -> None:
        self.engine = engine
        self.rescore = rescore

    async def promote(
        self, candidate: str | os.PathLike[str], live: str | os.PathLike[str], *, force: bool = False
    ) -> Promotion:
        """Make the bundle at `candidate` the live model if it is better than the one serving (or `force`).

        Raises model.checkpoint.BundleError if the candidate cannot be loaded (then nothing has changed), and
        bot.engine.EngineClosedError after the engine closed. A re-score that fails keeps the live model (the
        scores do not compare) unless `force`. A failure while moving the files is put back and reported in
        `Promotion.error`: the files and the live model stay as they were.
        """
        engine = self.engine
        candidate, live = Path(candidate), Path(live)
        sampler = await engine.load_candidate(candidate)
        new = sampler.bundle
        before = engine.info
        rescored, rescore_error = None, None
        if before is not None and self.rescore is not None and not same_heldout(before.bundle, new):
            try:
                rescored = await self._rescore(before.bundle, new)
            except Exception as exc:  # noqa: BLE001 - any failure means the scores do not compare; it is reported
                log.error("could not re-score the live model on the new held-out text: %s", exc)
                rescore_error = first_line(exc)
        if rescore_error is not None and not force:
            decision = SwapDecision(False, Why.RESCORE_FAILED, metric(new.metrics, "bpc"), error=rescore_error)
        else:
            live_metrics = rescored if rescored is not None else before.metrics if before else None
            decision = decide_swap(live_metrics, new.metrics, force=force)
        promotion = Promotion(new, before, decision, rescored=rescored, rescore_error=rescore_error)
        if not decision.swap:
            return promotion
        try:
            await asyncio.to_thread(replace_keeping_previous, candidate, live)
        except OSError as exc:
            log.error("could not move %s onto %s: %s", candidate, live, exc)
            return dataclasses.replace(promotion, error=str(exc))
        info = engine.go_live(sampler, live)
        log.info(
            "promoted %s: bundle %s (%s) is live%s",
            candidate,
            info.bundle_hash[:12],
            describe_metrics(info.metrics),
            f", replacing {before.bundle_hash[:12]}" if before else "",
        )
        return dataclasses.replace(promotion, swapped=True)

    async def _rescore(self, live: Bundle, candidate: Bundle) -> dict[str, Any]:
        """Run the rescorer in the worker thread: it may use the live network, which only that thread runs."""
        assert self.rescore is not None
        started = time.monotonic()
        figures = await self.engine.on_worker(self.rescore, live, candidate)
        log.info(
            "re-scored the live model on the new held-out text in %.1fs: %s",
            time.monotonic() - started,
            describe_metrics(figures),
        )
        return figures


def replace_keeping_previous(candidate: Path, live: Path) -> None:
    """Move `candidate` onto `live`; the old `live`, if any, becomes *.previous. All or nothing.

    The old file gets its second name under a temporary one first, so that if the move fails nothing
    has changed, not even *.previous.
    """
    previous = sibling(live, "previous")
    kept = previous.with_name(f".{previous.name}.tmp")
    if live.is_file():
        kept.unlink(missing_ok=True)
        try:
            os.link(live, kept)  # a second name for the old file: instant, no copy
        except OSError:  # a filesystem without hard links
            shutil.copy2(live, kept)
    try:
        os.replace(candidate, live)  # same folder: readers see the old file or the new one, never half
    except OSError:
        kept.unlink(missing_ok=True)
        raise
    # The new model is in place: what follows only tidies up, and must not undo the promotion.
    try:
        if kept.exists():
            os.replace(kept, previous)
        fsync_dir(live.parent)
    except OSError as exc:
        log.warning("the new model is in place, but keeping the old one as %s failed: %s", previous, exc)


def describe_metrics(metrics: dict[str, Any]) -> str:
    """The first few float figures of a bundle's metrics, for the log: "bpc 4.210, static_bpc 4.300"."""
    parts = [f"{key} {value:.3f}" for key, value in metrics.items() if isinstance(value, float)][:3]
    return ", ".join(parts) or "no metrics"
